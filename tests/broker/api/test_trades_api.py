"""The REST API in-process (DRF test client), with the exchange's quote faked at its
boundary; the database is the real PostgreSQL."""

import uuid
from decimal import Decimal

import pytest

from broker.models import LedgerEntry, OutboxEvent
from tests.broker.api.conftest import client_for, order
from tests.factories import fixed_price, give_shares, make_customer, trades_of

pytestmark = pytest.mark.django_db


def test_place_trade_returns_201_with_the_trade():
    customer, token = make_customer("5000.00")
    response = client_for(token).post("/api/v1/trades", order(), format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) >= {
        "id",
        "status",
        "symbol",
        "side",
        "quantity",
        "filled_quantity",
        "average_price",
        "created_at",
    }
    assert body["status"] == "accepted"
    assert (body["symbol"], body["side"], body["quantity"]) == (
        "AAPL",
        "buy",
        "10.000000",
    )
    assert body["average_price"] is None
    account = client_for(token).get("/api/v1/account").json()
    assert account == {
        "customer_id": customer.pk,
        "cash": "5000.00",
        "reserved_cash": "1050.00",
        "buying_power": "3950.00",
        "positions_value": "0.00",
        "equity": "5000.00",
    }


def test_insufficient_buying_power_is_a_422_problem_and_writes_nothing():
    customer, token = make_customer("100.00")
    response = client_for(token).post("/api/v1/trades", order(), format="json")

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "insufficient_buying_power"
    assert problem["status"] == 422
    assert {"type", "title", "detail"} <= set(problem)
    assert trades_of(customer).count() == 0
    assert LedgerEntry.objects.filter(account__customer=customer).count() == 1
    assert not OutboxEvent.objects.filter(key=str(customer.pk)).exists()


def test_selling_shares_not_held_is_a_422():
    _, token = make_customer()
    response = client_for(token).post(
        "/api/v1/trades", order(side="sell"), format="json"
    )
    assert response.status_code == 422
    assert response.json()["code"] == "insufficient_shares"


def test_unknown_symbol_is_a_422_naming_the_field():
    _, token = make_customer()
    response = client_for(token).post(
        "/api/v1/trades", order(symbol="NOPE"), format="json"
    )
    assert response.status_code == 422
    assert response.json()["code"] == "unknown_symbol"
    assert "symbol" in response.json()["errors"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (order(quantity="0"), "quantity"),
        (order(quantity="-5"), "quantity"),
        (order(quantity="abc"), "quantity"),
        (order(quantity="NaN"), "quantity"),
        (order(quantity="Infinity"), "quantity"),
        (order(quantity="1e400"), "quantity"),
        (order(quantity="0.0000001"), "quantity"),
        (order(side="hold"), "side"),
        (order(type="stop"), "type"),
        (order(symbol=""), "symbol"),
        (order(symbol="A" * 40), "symbol"),
        (order(symbol=["AAPL"]), "symbol"),
        ({"symbol": "AAPL"}, "side"),
    ],
)
def test_invalid_fields_are_a_400_with_field_errors_and_write_nothing(body, field):
    customer, token = make_customer()
    response = client_for(token).post("/api/v1/trades", body, format="json")
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert field in problem["errors"]
    assert trades_of(customer).count() == 0


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'"text"', b"\xff\xfe"])
def test_malformed_json_is_a_4xx_never_a_500(raw):
    _, token = make_customer()
    response = client_for(token).post(
        "/api/v1/trades", raw, content_type="application/json"
    )
    assert 400 <= response.status_code < 500
    assert response["Content-Type"] == "application/problem+json"


def test_requests_without_a_valid_token_are_401():
    for token in (None, "not-a-token"):
        response = client_for(token).get("/api/v1/account")
        assert response.status_code == 401
        assert response.json()["code"] in {"not_authenticated", "authentication_failed"}


def test_a_customer_cannot_see_another_customers_trade():
    _, owner_token = make_customer("5000.00")
    _, other_token = make_customer("5000.00")
    trade_id = client_for(owner_token).post("/api/v1/trades", order(), format="json")
    trade_id = trade_id.json()["id"]

    assert client_for(owner_token).get(f"/api/v1/trades/{trade_id}").status_code == 200
    response = client_for(other_token).get(f"/api/v1/trades/{trade_id}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    missing = client_for(owner_token).get(f"/api/v1/trades/{uuid.uuid4()}")
    assert missing.status_code == 404


def test_positions_list_only_the_customers_own_holdings():
    first, first_token = make_customer()
    second, _ = make_customer()
    give_shares(first, "MSFT", "3")
    give_shares(second, "TSLA", "7")

    positions = client_for(first_token).get("/api/v1/positions").json()
    assert positions == [
        {
            "symbol": "MSFT",
            "quantity": "3.000000",
            "reserved_quantity": "0.000000",
            "available_quantity": "3.000000",
        }
    ]


def test_unknown_api_path_is_a_problem_404():
    _, token = make_customer()
    response = client_for(token).get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_trade_detail_includes_its_fills_and_prices_are_strings():
    _, token = make_customer("5000.00")
    trade_id = client_for(token).post("/api/v1/trades", order(), format="json")
    body = client_for(token).get(f"/api/v1/trades/{trade_id.json()['id']}").json()
    assert body["fills"] == []
    assert isinstance(body["quantity"], str)
    assert Decimal(body["quantity"]) == 10


def test_openapi_schema_and_docs_are_served_without_a_token():
    schema = client_for(None).get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    body = schema.json()
    assert body["openapi"].startswith("3.")
    assert "/api/v1/trades" in body["paths"]
    assert "bearerAuth" in body["components"]["securitySchemes"]
    docs = client_for(None).get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


# --- the API request on the trade's timeline ------------------------------------


def test_the_timeline_opens_with_the_api_request_that_placed_the_trade():
    from broker import ops

    customer, token = make_customer("5000.00")
    response = client_for(token).post(
        "/api/v1/trades",
        order(),
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-timeline-1",
        HTTP_USER_AGENT="brokerapp-ios/7.2",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
    )
    assert response.status_code == 201, response.content

    (trade,) = trades_of(customer)
    first, second = ops.trade_timeline(trade)[:2]
    assert (first.source, first.kind) == ("api", "request")
    assert first.detail == (
        "POST /api/v1/trades, Idempotency-Key k-timeline-1, from 127.0.0.1 "
        "(X-Forwarded-For 203.0.113.9), brokerapp-ios/7.2"
    )
    # The acceptance line it caused, without the request repeated in it.
    assert (second.source, second.status) == ("event", "accepted")
    assert "origin" not in second.detail


def test_request_headers_on_the_timeline_are_bounded_and_printable():
    customer, token = make_customer("5000.00")
    response = client_for(token).post(
        "/api/v1/trades",
        order(),
        format="json",
        HTTP_USER_AGENT="evil\x00agent\x1b[31m" + "x" * 5000,
    )
    assert response.status_code == 201, response.content

    (trade,) = trades_of(customer)
    origin = trade.events.get(status="accepted").detail["origin"]
    assert origin["user_agent"].startswith("evilagent[31m")
    assert len(origin["user_agent"]) <= 200
    assert "idempotency_key" not in origin  # none was sent


def test_a_trade_placed_outside_the_api_has_no_request_line():
    from broker import ops
    from broker.services.placement import trade_place

    customer, _ = make_customer("5000.00")
    trade = trade_place(
        customer=customer,
        symbol="AAPL",
        side="buy",
        quantity=Decimal("1"),
        order_type="market",
        price_source=fixed_price("100.00"),
    )
    assert "api" not in {entry.source for entry in ops.trade_timeline(trade)}
