"""Pure matching: limit crossing, price improvement, touch size, ioc, collar."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from exchange_mock.matching import (
    cancel,
    executable_price,
    expire,
    fill_once,
    on_arrival,
)
from exchange_mock.orders import Order, parse_order_request
from exchange_mock.quotes import make_quote

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def quote(last: str = "190.00", size: str = "1000"):
    """bid = last - 0.02, ask = last + 0.02 around 190."""
    return make_quote("AAPL", Decimal(last), NOW, 0, Decimal(size))


def order(**fields) -> Order:
    body = {
        "client_order_id": "c-1",
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "10",
        "type": "limit",
        "limit_price": "189.00",
        **fields,
    }
    if body["type"] == "market":
        body.pop("limit_price")
    body = {k: v for k, v in body.items() if v is not None}
    return Order.accept(parse_order_request(body), "EX-000001", "s", NOW)


def summary(changes):
    return [
        (
            c.type,
            c.order.status,
            c.execution and (c.execution.quantity, c.execution.price),
        )
        for c in changes
    ]


def _fill(change):
    execution = change.execution
    return None if execution is None else (execution.quantity, execution.price)


def test_limit_buy_below_the_ask_rests_as_new():
    changes = on_arrival(order(), quote(), True, NOW)
    assert summary(changes) == [("new", "new", None)]
    assert changes[0].order.leaves_quantity == 10


def test_limit_buy_fills_at_the_ask_when_it_crosses_price_improvement():
    # Limit 190.10 against ask 190.02: the order gets the ask, not its limit.
    changes = on_arrival(order(limit_price="190.10"), quote(), True, NOW)
    assert summary(changes) == [("fill", "filled", (10, Decimal("190.02")))]
    assert changes[0].execution.exec_id == "EX-000001-1"
    assert changes[0].order.leaves_quantity == 0


@pytest.mark.parametrize(
    ("side", "limit", "crosses", "price"),
    [
        ("buy", "190.02", True, "190.02"),  # ask == limit
        ("buy", "190.01", False, None),
        ("sell", "189.98", True, "189.98"),  # bid == limit
        ("sell", "189.99", False, None),
        ("sell", "150", True, "189.98"),  # sells at the bid, above its limit
    ],
)
def test_limit_crossing(side, limit, crosses, price):
    resting = order(side=side, limit_price=limit)
    assert executable_price(resting, quote()) == (Decimal(price) if crosses else None)


def test_resting_limit_fills_once_the_quote_moves_through_it():
    resting = on_arrival(order(limit_price="189.00"), quote(), True, NOW)[-1].order
    assert fill_once(resting, quote("189.50"), NOW) is None  # ask 189.52
    change = fill_once(resting, quote("188.50"), NOW)  # ask 188.52 <= 189
    assert change.type == "fill"
    assert change.execution.price == Decimal("188.52")
    assert change.order.status == "filled"


def test_partial_fills_by_touch_size_one_execution_per_match():
    small = quote("180.00", size="400")  # crosses the 189 limit
    changes = on_arrival(order(quantity="1000"), small, True, NOW)
    assert summary(changes) == [("fill", "partially_filled", (400, Decimal("180.02")))]
    current = changes[-1].order
    second = fill_once(current, small, NOW)
    assert second.order.status == "partially_filled"
    assert second.order.leaves_quantity == 200
    third = fill_once(second.order, small, NOW)
    assert third.execution.quantity == 200  # min(leaves, size)
    assert third.order.status == "filled"
    assert [e.exec_id for e in third.order.executions] == [
        "EX-000001-1",
        "EX-000001-2",
        "EX-000001-3",
    ]
    assert fill_once(third.order, small, NOW) is None  # terminal: no more


def test_zero_size_offers_nothing():
    assert fill_once(order(type="market"), quote(size="0"), NOW) is None


def test_ioc_partial_fill_then_cancel_of_the_rest():
    changes = on_arrival(
        order(quantity="1500", limit_price="191", time_in_force="ioc"),
        quote(),
        True,
        NOW,
    )
    assert summary(changes) == [
        ("fill", "partially_filled", (1000, Decimal("190.02"))),
        ("canceled", "canceled", None),
    ]
    final = changes[-1].order
    assert final.filled_quantity == 1000
    assert final.leaves_quantity == 0


def test_ioc_full_fill_is_filled_and_unexecutable_ioc_is_canceled():
    full = on_arrival(order(limit_price="191", time_in_force="ioc"), quote(), True, NOW)
    assert summary(full) == [("fill", "filled", (10, Decimal("190.02")))]
    none = on_arrival(order(time_in_force="ioc"), quote(), True, NOW)
    assert summary(none) == [("canceled", "canceled", None)]
    assert none[-1].order.executions == ()


def test_market_remainder_rests_and_continues():
    changes = on_arrival(order(type="market", quantity="1500"), quote(), True, NOW)
    assert summary(changes) == [("fill", "partially_filled", (1000, Decimal("190.02")))]
    later = fill_once(changes[-1].order, quote("191.00"), NOW)
    assert later.execution.price == Decimal("191.02")
    assert later.order.status == "filled"


def test_market_ioc_remainder_is_canceled():
    changes = on_arrival(
        order(type="market", quantity="1500", time_in_force="ioc"), quote(), True, NOW
    )
    assert [c.type for c in changes] == ["fill", "canceled"]


@pytest.mark.parametrize(
    ("side", "collar", "status"),
    [
        ("buy", "190.01", "rejected"),
        ("buy", "190.02", "filled"),
        ("sell", "189.99", "rejected"),
        ("sell", "189.98", "filled"),
    ],
)
def test_collar_on_arrival(side, collar, status):
    market = order(type="market", side=side, collar_price=collar)
    [change] = on_arrival(market, quote(), True, NOW)
    assert change.order.status == status
    if status == "rejected":
        assert change.type == "rejected"
        assert change.order.reject_reason == "price_outside_collar"


def test_collar_after_a_partial_fill_pauses_the_remainder():
    market = order(type="market", quantity="1500", collar_price="190.05")
    partial = on_arrival(market, quote(), True, NOW)[-1].order
    assert partial.status == "partially_filled"
    assert fill_once(partial, quote("190.10"), NOW) is None  # ask 190.12 > collar
    resumed = fill_once(partial, quote("190.03"), NOW)  # ask 190.05 == collar
    assert resumed.order.status == "filled"


def test_market_order_while_closed_is_rejected_limit_rests():
    [market] = on_arrival(order(type="market"), quote(), False, NOW)
    assert (market.type, market.order.reject_reason) == ("rejected", "market_closed")
    # A limit that would cross rests while closed: nothing trades.
    [limit] = on_arrival(order(limit_price="191"), quote(), False, NOW)
    assert (limit.type, limit.order.status) == ("new", "new")


def test_cancel_and_expire_keep_the_executions():
    partial = on_arrival(order(quantity="1500", limit_price="191"), quote(), True, NOW)[
        -1
    ].order
    canceled = cancel(partial, NOW).order
    expired = expire(partial, NOW).order
    for done, status in [(canceled, "canceled"), (expired, "expired")]:
        assert done.status == status
        assert done.filled_quantity == 1000
        assert done.leaves_quantity == 0
        assert len(done.executions) == 1


def test_order_json_of_a_resting_limit():
    body = on_arrival(
        order(quantity="2.5", limit_price="189.1234"), quote(), True, NOW
    )[-1].order.to_json()
    assert body["type"] == "limit"
    assert body["time_in_force"] == "day"
    assert body["limit_price"] == "189.1234"
    assert body["status"] == "new"
    assert body["leaves_quantity"] == "2.5"
    assert body["filled_quantity"] == "0"
    assert body["session_id"] == "s"
    assert body["updated_at"] == body["created_at"]
