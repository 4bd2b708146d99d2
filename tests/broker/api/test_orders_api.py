import base64
import uuid
from decimal import Decimal

import pytest

from broker.models import Account, OutboxEvent, Trade
from tests.broker.api.conftest import client_for, order
from tests.factories import make_customer, trades_of

pytestmark = pytest.mark.django_db


def place(token, **overrides):
    return client_for(token).post("/api/v1/trades", order(**overrides), format="json")


def test_limit_buy_holds_quantity_times_limit_price():
    customer, token = make_customer("5000.00")
    response = place(token, type="limit", limit_price="95.50", time_in_force="gtc")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["type"], body["time_in_force"], body["limit_price"]) == (
        "limit",
        "gtc",
        "95.5000",
    )
    assert Account.objects.get(customer=customer).reserved_cash == Decimal("955.00")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"type": "limit"}, "limit_price"),
        ({"type": "limit", "limit_price": None}, "limit_price"),
        ({"limit_price": "10"}, "limit_price"),
        ({"type": "limit", "limit_price": "10", "quantity": "1.5"}, "quantity"),
        ({"type": "limit", "limit_price": "0"}, "limit_price"),
        ({"type": "limit", "limit_price": "10.00001"}, "limit_price"),
        ({"time_in_force": "gtc"}, "time_in_force"),
        ({"time_in_force": "fok"}, "time_in_force"),
        ({"client_order_id": "has spaces"}, "client_order_id"),
        ({"client_order_id": "x" * 65}, "client_order_id"),
    ],
)
def test_order_shape_errors_are_400s_naming_the_field(overrides, field):
    customer, token = make_customer("5000.00")
    response = place(token, **overrides)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]
    assert trades_of(customer).count() == 0


def test_fractional_market_orders_are_accepted():
    _, token = make_customer("5000.00")
    response = place(token, quantity="0.123456")
    assert response.status_code == 201
    assert response.json()["quantity"] == "0.123456"


def test_client_order_id_is_unique_per_customer_only():
    customer, token = make_customer("5000.00")
    _, other_token = make_customer("5000.00")
    assert place(token, quantity="1", client_order_id="mine-1").status_code == 201
    again = place(token, quantity="1", client_order_id="mine-1")
    assert again.status_code == 409
    assert again.json()["code"] == "duplicate_client_order_id"
    assert trades_of(customer).count() == 1
    assert place(other_token, quantity="1", client_order_id="mine-1").status_code == 201


def test_cancel_moves_to_pending_cancel_and_enqueues_after_the_trade():
    customer, token = make_customer("5000.00")
    trade = place(token).json()
    response = client_for(token).post(f"/api/v1/trades/{trade['id']}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "pending_cancel"
    events = list(OutboxEvent.objects.filter(key=str(customer.pk)).order_by("id"))
    assert [e.event_type for e in events] == ["trade.placed", "trade.cancel_requested"]
    assert events[0].topic == events[1].topic

    repeat = client_for(token).post(f"/api/v1/trades/{trade['id']}/cancel")
    assert repeat.status_code == 202
    assert OutboxEvent.objects.filter(key=str(customer.pk)).count() == 2


def test_a_terminal_trade_cannot_be_canceled():
    _, token = make_customer("5000.00")
    trade = place(token).json()
    Trade.objects.filter(id=trade["id"]).update(status="filled")
    response = client_for(token).post(f"/api/v1/trades/{trade['id']}/cancel")
    assert response.status_code == 422
    assert response.json()["code"] == "trade_not_cancelable"


def test_nobody_can_cancel_another_customers_trade():
    _, owner = make_customer("5000.00")
    _, intruder = make_customer("5000.00")
    trade = place(owner).json()
    response = client_for(intruder).post(f"/api/v1/trades/{trade['id']}/cancel")
    assert response.status_code == 404
    assert Trade.objects.get(id=trade["id"]).status == "accepted"
    missing = client_for(owner).post(f"/api/v1/trades/{uuid.uuid4()}/cancel")
    assert missing.status_code == 404


def test_trade_list_filters_and_pages_with_cursors():
    _, token = make_customer("100000.00")
    for symbol, side in [("AAPL", "buy"), ("MSFT", "buy"), ("AAPL", "buy")]:
        assert place(token, symbol=symbol, side=side, quantity="1").status_code == 201
    canceled = place(token, symbol="TSLA", quantity="1").json()
    client_for(token).post(f"/api/v1/trades/{canceled['id']}/cancel")
    _, other = make_customer("100000.00")
    place(other, symbol="AAPL", quantity="1")
    client = client_for(token)

    everything = client.get("/api/v1/trades").json()["results"]
    assert len(everything) == 4
    created = [t["created_at"] for t in everything]
    assert created == sorted(created, reverse=True)
    aapl = client.get("/api/v1/trades", {"symbol": "aapl"}).json()["results"]
    assert {t["symbol"] for t in aapl} == {"AAPL"} and len(aapl) == 2
    pending = client.get("/api/v1/trades", {"status": "pending_cancel"}).json()
    assert [t["id"] for t in pending["results"]] == [canceled["id"]]
    open_ = client.get("/api/v1/trades", {"status": "open"}).json()["results"]
    assert len(open_) == 4
    assert client.get("/api/v1/trades", {"side": "sell"}).json()["results"] == []
    oldest = everything[-1]["created_at"]
    after = client.get("/api/v1/trades", {"created_after": oldest}).json()
    assert len(after["results"]) == 3
    before = client.get("/api/v1/trades", {"created_before": oldest}).json()
    assert before["results"] == []

    seen, url = [], "/api/v1/trades?limit=3"
    while url:
        page = client.get(url).json()
        seen += [t["id"] for t in page["results"]]
        url = page["next"]
    assert seen == [t["id"] for t in everything]


@pytest.mark.parametrize(
    "query",
    [
        {"status": "bogus"},
        {"side": "short"},
        {"created_after": "yesterday"},
        {"symbol": "$$$"},
        {"cursor": "not-a-cursor"},
        # Well-formed cursors whose position is not a timestamp.
        {"cursor": base64.b64encode(b"p=notadate").decode()},
        {"cursor": base64.b64encode(b"o=1&p=%00").decode()},
    ],
)
def test_bad_list_filters_are_400s(query):
    _, token = make_customer()
    response = client_for(token).get("/api/v1/trades", query)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_request"
