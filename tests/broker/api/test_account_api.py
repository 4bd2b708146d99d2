import base64
from decimal import Decimal

import pytest
from django.test import override_settings

from broker import quotes
from broker.exchange_client import Quote
from broker.models import LedgerEntry
from tests.broker.api.conftest import client_for, fake_quote, order
from tests.factories import give_shares, make_customer

pytestmark = pytest.mark.django_db


def test_account_values_positions_at_the_last_price():
    customer, token = make_customer("1000.00")
    give_shares(customer, "NVDA", "3")
    body = client_for(token).get("/api/v1/account").json()
    assert body["positions_value"] == "300.00"
    assert body["equity"] == "1300.00"


def test_position_detail_is_priced_and_only_the_owners():
    owner, token = make_customer()
    _, other = make_customer()
    give_shares(owner, "META", "2.5")
    body = client_for(token).get("/api/v1/positions/meta").json()
    assert body["symbol"] == "META"
    assert (body["current_price"], body["market_value"]) == ("100.0000", "250.00")
    assert client_for(other).get("/api/v1/positions/META").status_code == 404
    assert client_for(token).get("/api/v1/positions/TSLA").status_code == 404


def test_a_position_is_worth_the_same_on_every_screen(monkeypatch):
    """One share at 10.0050 is worth 10.01 (half up) both on its own page and in
    the account's positions value: once the two rounded differently."""
    monkeypatch.setattr(
        quotes,
        "quote",
        lambda symbol: Quote(
            symbol=symbol,
            bid=Decimal("10.0049"),
            ask=Decimal("10.0051"),
            last=Decimal("10.0050"),
        ),
    )
    customer, token = make_customer("0.00")
    give_shares(customer, "AMD", "1")
    position = client_for(token).get("/api/v1/positions/AMD").json()
    account = client_for(token).get("/api/v1/account").json()
    assert position["market_value"] == account["positions_value"] == "10.01"


def test_activities_are_the_customers_ledger_newest_first():
    customer, token = make_customer("500.00")
    _, other = make_customer("700.00")
    client_for(token).post("/api/v1/trades", order(quantity="1"), format="json")
    page = client_for(token).get("/api/v1/activities", {"limit": 1}).json()
    assert [a["kind"] for a in page["results"]] == ["hold"]
    rest = client_for(token).get(page["next"]).json()["results"]
    assert [a["kind"] for a in rest] == ["deposit"]
    assert rest[0]["amount"] == "500.000000"
    others = client_for(other).get("/api/v1/activities").json()["results"]
    assert [a["amount"] for a in others] == ["700.000000"]
    assert LedgerEntry.objects.filter(account__customer=customer).count() == 2


@pytest.mark.parametrize("cursor", [b"p=abc", b"p=1.5e999", b"r=1&p=%00"])
def test_an_activities_cursor_with_a_foreign_position_is_a_400(cursor):
    _, token = make_customer()
    response = client_for(token).get(
        "/api/v1/activities", {"cursor": base64.b64encode(cursor).decode()}
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"cursor": ["Invalid cursor"]}


@pytest.mark.parametrize("symbol", ["%00", "AAPL%3Fx", "A%00B", "..", "1AB"])
def test_a_symbol_path_that_is_no_ticker_is_a_404(symbol):
    owner, token = make_customer()
    give_shares(owner, "AAPL", "1")
    client = client_for(token)
    position = client.get(f"/api/v1/positions/{symbol}")
    assert position.status_code == 404, position.content
    quote = client.get(f"/api/v1/quotes/{symbol}")
    assert quote.status_code == 404, quote.content
    assert quote.json()["code"] == "unknown_symbol"


def test_deposits_are_refused_outside_the_sandbox():
    customer, token = make_customer("0")
    response = client_for(token).post(
        "/api/v1/account/deposits", {"amount": "100.00"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["code"] == "sandbox_funding_disabled"
    assert customer.account.cash == 0


@override_settings(SANDBOX_FUNDING=True)
def test_sandbox_deposit_credits_cash_through_the_ledger():
    customer, token = make_customer("0")
    response = client_for(token).post(
        "/api/v1/account/deposits", {"amount": "250.50"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["cash"] == "250.50"
    deposit = LedgerEntry.objects.get(account__customer=customer, kind="deposit")
    assert deposit.amount == Decimal("250.50")
    for bad in ["0", "-5", "1.001", "abc", "1e12"]:
        refused = client_for(token).post(
            "/api/v1/account/deposits", {"amount": bad}, format="json"
        )
        assert refused.status_code == 400, bad


def test_quotes_are_proxied_from_the_exchange():
    _, token = make_customer()
    body = client_for(token).get("/api/v1/quotes/aapl").json()
    assert body == {
        "symbol": "AAPL",
        "bid": "99.9900",
        "ask": "100.0100",
        "last": "100.0000",
    }
    missing = client_for(token).get("/api/v1/quotes/NOPE")
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_symbol"
    assert client_for(None).get("/api/v1/quotes/AAPL").status_code == 401


def test_an_unreachable_database_is_a_503_problem_not_a_500(monkeypatch):
    from django.db import OperationalError

    from broker.api import views

    _, token = make_customer()

    def database_gone(self, request):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(views.AccountApi, "get", database_gone)
    response = client_for(token).get("/api/v1/account")
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "database_unavailable"


def test_placement_reuses_a_fresh_last_price_and_refetches_a_stale_one(monkeypatch):
    from broker import quotes

    asked = []

    def counting_quote(symbol):
        asked.append(symbol)
        return fake_quote(symbol)

    monkeypatch.setattr(quotes, "quote", counting_quote)
    monkeypatch.setattr(quotes, "_listed", quotes.PriceCache(10))
    monkeypatch.setattr(quotes, "_unlisted", quotes.PriceCache(10))
    clock = [1000.0]
    monkeypatch.setattr(quotes.time, "monotonic", lambda: clock[0])
    with override_settings(QUOTE_MAX_AGE_SECONDS=1.0):
        assert quotes.last_price("AAPL") == Decimal("100")
        assert quotes.last_price("NOPE") is None
        clock[0] += 0.5
        assert quotes.last_price("AAPL") == Decimal("100")
        assert quotes.last_price("NOPE") is None
        assert asked == ["AAPL", "NOPE"]
        clock[0] += 0.6
        assert quotes.last_price("AAPL") == Decimal("100")
        assert asked == ["AAPL", "NOPE", "AAPL"]
    with override_settings(QUOTE_MAX_AGE_SECONDS=0.0):
        quotes.last_price("AAPL")
        quotes.last_price("AAPL")
    assert asked.count("AAPL") == 4
