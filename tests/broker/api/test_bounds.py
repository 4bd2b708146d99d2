"""Bounds on what a request can make the api hold: JSON nesting, and order
quantities and prices whose holds always fit their columns."""

from decimal import ROUND_UP, Decimal

import pytest
from django.test import override_settings

from broker import quotes
from broker.api.parsers import MAX_JSON_DEPTH, json_too_deep
from broker.exchange_client import Quote
from broker.models import Account, LedgerEntry, Trade
from broker.money import (
    CASH_PLACES,
    MAX_BUY_COLLAR,
    MAX_HOLD,
    MAX_PRICE,
    MAX_QUANTITY,
    PRICE_PLACES,
    PRICE_TICK,
    QUANTITY_PLACES,
    column_max,
    hold_amount,
)
from broker.services.customers import account_deposit
from tests.broker.api.conftest import client_for, order
from tests.factories import give_shares, make_customer, trades_of

pytestmark = pytest.mark.django_db

QUANTITY_STEP = Decimal(1).scaleb(-QUANTITY_PLACES)


def post_raw(token: str, body: str, **headers):
    return client_for(token).post(
        "/api/v1/trades", body, content_type="application/json", **headers
    )


# --- JSON nesting ----------------------------------------------------------------


def nested_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize(
    "body",
    [
        nested_array(1000),
        nested_object(1000),
        nested_array(100_000),
        nested_array(MAX_JSON_DEPTH + 1),
        # Deep inside an otherwise valid order.
        '{"symbol": "AAPL", "side": "buy", "quantity": "1", "type": "market", '
        f'"extra": {nested_array(5000)}}}',
    ],
    ids=["array-1000", "object-1000", "array-100000", "one-too-deep", "in-an-order"],
)
@pytest.mark.parametrize("with_key", [False, True], ids=["no-key", "idempotency-key"])
def test_a_json_body_nested_too_deep_is_a_400_not_a_500(body, with_key):
    customer, token = make_customer()
    headers = {"HTTP_IDEMPOTENCY_KEY": f"deep-{with_key}"} if with_key else {}
    response = post_raw(token, body, **headers)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_request"
    assert trades_of(customer).count() == 0


def test_nesting_within_the_limit_still_reaches_the_field_checks():
    _, token = make_customer()
    body = order(symbol=[[["AAPL"]]])
    response = client_for(token).post("/api/v1/trades", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"
    assert "symbol" in response.json()["errors"]


def test_brackets_inside_strings_do_not_count_as_nesting():
    assert not json_too_deep(b'{"a": "' + b"[" * 1000 + b'"}')
    assert not json_too_deep(b'{"a": "\\"' + b"{" * 1000 + b'"}')
    assert json_too_deep(nested_array(MAX_JSON_DEPTH + 1).encode())
    assert not json_too_deep(nested_array(MAX_JSON_DEPTH).encode())


# --- Order bounds ----------------------------------------------------------------


def test_the_largest_hold_of_any_accepted_order_fits_every_column_it_touches():
    collar_price = (MAX_PRICE * (1 + MAX_BUY_COLLAR)).quantize(
        PRICE_TICK, rounding=ROUND_UP
    )
    largest = hold_amount(MAX_QUANTITY, collar_price)
    # A hold is a ledger amount and hold_remaining (quantity columns) and sits in
    # reserved_cash (a cash column).
    assert largest <= MAX_HOLD <= column_max(QUANTITY_PLACES)
    assert largest <= column_max(CASH_PLACES)
    assert MAX_QUANTITY <= column_max(QUANTITY_PLACES)
    assert collar_price <= column_max(PRICE_PLACES)


def quoted_at(last: Decimal):
    def fake(symbol: str) -> Quote:
        return Quote(symbol=symbol, bid=last, ask=last, last=last)

    return fake


def test_a_limit_buy_at_the_quantity_and_price_bounds_is_accepted():
    hold = MAX_QUANTITY * MAX_PRICE
    customer, token = make_customer(hold)
    response = client_for(token).post(
        "/api/v1/trades",
        order(type="limit", quantity=str(MAX_QUANTITY), limit_price=str(MAX_PRICE)),
        format="json",
    )
    assert response.status_code == 201, response.content
    trade = Trade.objects.get(pk=response.json()["id"])
    assert trade.hold_remaining == hold
    account = Account.objects.get(customer=customer)
    assert account.reserved_cash == hold and account.buying_power == 0
    entry = LedgerEntry.objects.get(trade=trade, kind=LedgerEntry.Kind.HOLD)
    assert entry.amount == hold


@override_settings(BUY_COLLAR=MAX_BUY_COLLAR)
def test_a_market_buy_at_the_bounds_with_the_widest_collar_is_accepted(
    monkeypatch,
):
    monkeypatch.setattr(quotes, "quote", quoted_at(MAX_PRICE))
    hold = MAX_QUANTITY * MAX_PRICE * (1 + MAX_BUY_COLLAR)
    _, token = make_customer(hold)
    response = client_for(token).post(
        "/api/v1/trades", order(quantity=str(MAX_QUANTITY)), format="json"
    )
    assert response.status_code == 201, response.content
    assert Trade.objects.get(pk=response.json()["id"]).hold_remaining == hold


def test_a_sell_of_the_largest_quantity_is_accepted():
    customer, token = make_customer()
    give_shares(customer, "AAPL", MAX_QUANTITY)
    response = client_for(token).post(
        "/api/v1/trades",
        order(side="sell", quantity=str(MAX_QUANTITY)),
        format="json",
    )
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": str(MAX_QUANTITY + QUANTITY_STEP)}, "quantity"),
        ({"quantity": str(MAX_QUANTITY * 100)}, "quantity"),
        (
            {"type": "limit", "quantity": "1", "limit_price": str(MAX_PRICE + 1)},
            "limit_price",
        ),
    ],
)
def test_quantities_and_prices_beyond_the_bounds_are_400s(overrides, field):
    customer, token = make_customer(MAX_HOLD)
    response = client_for(token).post(
        "/api/v1/trades", order(**overrides), format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert trades_of(customer).count() == 0


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_an_exchange_price_above_the_bound_is_refused_not_a_500(monkeypatch, side):
    # A market buy of the largest quantity against this price would hold more
    # than a ledger entry takes, and the account can pay for it (a cash balance
    # has more integer digits than one entry); a sell's fill would overflow the
    # same way.
    monkeypatch.setattr(quotes, "quote", quoted_at(MAX_PRICE * 100))
    customer, token = make_customer(MAX_HOLD)
    for _ in range(20):
        account_deposit(account=customer.account, amount=MAX_HOLD)
    give_shares(customer, "AAPL", MAX_QUANTITY)
    response = client_for(token).post(
        "/api/v1/trades",
        order(side=side, quantity=str(MAX_QUANTITY)),
        format="json",
    )
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "price_out_of_range"
    assert "symbol" in body["errors"]
    assert trades_of(customer).count() == 0
