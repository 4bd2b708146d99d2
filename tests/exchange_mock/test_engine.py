"""The engine: resting orders matched on ticks, session close and open, cancel,
epoch fencing and the report feed the FIX acceptor turns into ExecutionReports,
in one process (no FIX, no HTTP)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import time as daytime
from decimal import Decimal

import pytest

from exchange_mock.clock import MarketHours
from exchange_mock.engine import (
    DuplicateOrderConflict,
    Exchange,
    UnknownOrderError,
)
from exchange_mock.faults import FaultConfig, Faults
from exchange_mock.orders import parse_order_request
from exchange_mock.quotes import QuoteBook
from exchange_mock.sessions import Fence, StaleEpoch
from exchange_mock.store import OrderStore

MONDAY_NOON = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = MONDAY_NOON) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def limit(cid: str = "c-1", **fields):
    return parse_order_request(
        {
            "client_order_id": cid,
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "10",
            "type": "limit",
            "limit_price": "189.00",
            **fields,
        }
    )


def market(cid: str = "m-1", **fields):
    return parse_order_request(
        {
            "client_order_id": cid,
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "10",
            "type": "market",
            **fields,
        }
    )


def make_exchange(store: OrderStore, clock=None, **kwargs) -> Exchange:
    clock = clock or FakeClock()
    book = QuoteBook(seed=1, prices={"AAPL": Decimal("190.00")}, clock=clock)
    return Exchange(book, store, clock, **kwargs)


@pytest.fixture
def store():
    store = OrderStore(":memory:")
    yield store
    store.close()


@pytest.fixture
def exchange(store):
    return make_exchange(store)


def feed(exchange: Exchange, session: str = "default", after: int = 0):
    reports = exchange.feed.read(session, after, 1000, 0)
    return [(r["seq"], r["type"], r["order"]["status"]) for r in reports]


def test_resting_limit_fills_when_the_price_moves_through_it(exchange):
    resting = exchange.submit(limit()).order
    assert resting.status == "new"
    exchange.quotes.set("AAPL", last=Decimal("189.50"))  # ask 189.52: no
    assert exchange.get_order("c-1").status == "new"
    exchange.quotes.set("AAPL", last=Decimal("188.00"))  # ask 188.02 <= 189
    filled = exchange.get_order("c-1")
    assert filled.status == "filled"
    assert filled.executions[0].price == Decimal("188.02")
    assert feed(exchange) == [(1, "new", "new"), (2, "fill", "filled")]


def test_every_tick_offers_the_touch_size_to_every_crossing_order(exchange):
    exchange.quotes.set("AAPL", size=Decimal("300"))
    for cid in ("a", "b"):
        exchange.submit(limit(cid, quantity="500", limit_price="195"))
    assert [o.filled_quantity for o in exchange.list_orders()] == [300, 300]
    exchange.quotes.step()  # a tick of the walk: each gets up to 300 again
    orders = exchange.list_orders()
    assert [o.status for o in orders] == ["filled", "filled"]
    assert [len(o.executions) for o in orders] == [2, 2]


def test_matching_happens_in_arrival_order(exchange):
    exchange.submit(limit("first", limit_price="189"))
    exchange.submit(limit("second", limit_price="189"))
    exchange.quotes.set("AAPL", last=Decimal("188"))
    first, second = exchange.list_orders()
    assert first.executions[0].timestamp <= second.executions[0].timestamp
    seqs = {
        r["client_order_id"]: r["seq"] for r in exchange.feed.read("default", 2, 10, 0)
    }
    assert seqs == {"first": 3, "second": 4}


def test_close_expires_day_orders_and_keeps_gtc(exchange):
    exchange.submit(limit("day"))
    exchange.submit(limit("gtc", time_in_force="gtc"))
    exchange.submit(market("part", quantity="1500"))  # 1000 filled, rest rests
    status = exchange.close_market()
    assert status["is_open"] is False
    by_id = {o.client_order_id: o for o in exchange.list_orders()}
    assert by_id["day"].status == "expired"
    assert by_id["gtc"].status == "new"
    assert by_id["part"].status == "expired"
    assert by_id["part"].filled_quantity == 1000
    assert [t for _, t, _ in feed(exchange)][-2:] == ["expired", "expired"]
    # Closing again does nothing more.
    before = feed(exchange)
    exchange.close_market()
    assert feed(exchange) == before


def test_closed_market_rejects_market_orders_and_rests_limits(exchange):
    exchange.close_market()
    rejected = exchange.submit(market()).order
    assert (rejected.status, rejected.reject_reason) == ("rejected", "market_closed")
    crossing = exchange.submit(limit("cross", limit_price="195")).order
    assert crossing.status == "new"  # would cross, but the market is closed
    exchange.quotes.step()  # ticks do not trade while closed
    assert exchange.get_order("cross").status == "new"
    exchange.open_market()  # opening matches the resting orders
    assert exchange.get_order("cross").status == "filled"


def test_day_order_entered_while_closed_lives_through_the_next_session(exchange):
    exchange.close_market()
    exchange.submit(limit("overnight"))
    exchange.close_market()  # already closed: not a session end
    assert exchange.get_order("overnight").status == "new"
    exchange.open_market()
    exchange.close_market()
    assert exchange.get_order("overnight").status == "expired"


def test_cancel_open_and_terminal_orders(exchange):
    exchange.submit(limit("open"), Fence("s", 1))
    canceled = exchange.cancel("open", Fence("s", 1))
    assert canceled.status == "canceled"
    assert exchange.cancel("open", Fence("s", 1)) == canceled  # idempotent
    exchange.submit(market("done"), Fence("s", 1))
    assert exchange.cancel("done", Fence("s", 1)).status == "filled"
    assert [t for _, t, _ in feed(exchange, "s")] == ["new", "canceled", "fill"]


def test_cancel_of_another_sessions_order_or_unknown_is_unknown(exchange):
    exchange.submit(limit("mine"), Fence("s", 1))
    for fence in (Fence("other", 1), None):
        with pytest.raises(UnknownOrderError):
            exchange.cancel("mine", fence)
    with pytest.raises(UnknownOrderError):
        exchange.cancel("nope", Fence("s", 1))
    assert exchange.get_order("mine").status == "new"


def test_stale_epoch_does_nothing(exchange):
    exchange.logon("s", 5)
    with pytest.raises(StaleEpoch) as info:
        exchange.submit(limit(), Fence("s", 4))
    assert (info.value.epoch, info.value.current) == (4, 5)
    assert exchange.get_order("c-1") is None
    assert exchange.feed.last_seq("s") == 0
    exchange.submit(limit(), Fence("s", 5))
    with pytest.raises(StaleEpoch):
        exchange.cancel("c-1", Fence("s", 4))
    assert exchange.get_order("c-1").status == "new"
    # A higher epoch is an implicit logon: 5 is stale from now on.
    exchange.submit(limit("c-2"), Fence("s", 6))
    with pytest.raises(StaleEpoch):
        exchange.logon("s", 5)
    assert exchange.logon("s", 6) == (6, 2)


def test_sessions_are_fenced_independently(exchange):
    exchange.logon("a", 10)
    assert exchange.logon("b", 0) == (0, 0)
    exchange.submit(limit("b-1"), Fence("b", 0))


def test_resend_from_another_session_is_a_conflict(exchange):
    exchange.submit(limit(), Fence("s", 1))
    with pytest.raises(DuplicateOrderConflict) as info:
        exchange.submit(limit(), Fence("t", 1))
    assert not info.value.same_session
    again = exchange.submit(limit(), Fence("s", 1))
    assert not again.created


def test_resend_returns_the_order_as_it_is_now(exchange):
    exchange.submit(limit())
    exchange.quotes.set("AAPL", last=Decimal("188"))
    again = exchange.submit(limit())
    assert not again.created
    assert again.order.status == "filled"
    assert len(again.order.executions) == 1


def test_feed_sequences_are_per_session_and_gapless(exchange):
    exchange.submit(limit("a-1"), Fence("a", 1))
    exchange.submit(market("b-1"), Fence("b", 1))
    exchange.submit(limit("a-2", time_in_force="ioc"), Fence("a", 1))
    exchange.submit(market("d-1"))
    assert feed(exchange, "a") == [(1, "new", "new"), (2, "canceled", "canceled")]
    assert feed(exchange, "b") == [(1, "fill", "filled")]
    assert feed(exchange, "default") == [(1, "fill", "filled")]
    assert feed(exchange, "a", after=1) == [(2, "canceled", "canceled")]
    assert [r["seq"] for r in exchange.feed.read("a", 0, 1, 0)] == [1]  # a page
    assert exchange.feed.last_seq("a") == 2
    assert exchange.feed.read("nobody", 0, 10, 0) == []
    assert exchange.feed.last_seq("nobody") == 0


def test_report_carries_the_execution_and_the_order_after_the_change(exchange):
    exchange.submit(market(quantity="1500"), Fence("s", 1))
    [report] = exchange.feed.read("s", 0, 10, 0)
    assert report["type"] == "fill"
    assert report["execution"]["exec_id"] == "EX-000001-1"
    assert report["execution"]["quantity"] == "1000"
    assert report["order"]["status"] == "partially_filled"
    assert report["order"]["leaves_quantity"] == "500"
    assert report["order"] == exchange.get_order("m-1").to_json()


def test_a_blocked_feed_read_is_woken_by_a_new_report(exchange):
    """The FIX pump's read: it waits for the next report instead of polling."""
    exchange.submit(limit(), Fence("s", 1))
    result = {}

    def read():
        started = time.monotonic()
        result["reports"] = exchange.feed.read("s", 1, 10, 10)
        result["elapsed"] = time.monotonic() - started

    reader = threading.Thread(target=read)
    reader.start()
    # Whether the reader is already blocked or not, the fill must reach it long
    # before its 10 s wait runs out.
    exchange.quotes.set("AAPL", last=Decimal("188"))
    reader.join(5)
    assert not reader.is_alive()
    assert [r["type"] for r in result["reports"]] == ["fill"]
    assert result["elapsed"] < 5


def test_a_feed_read_with_nothing_new_returns_empty_after_its_wait(exchange):
    started = time.monotonic()
    assert exchange.feed.read("s", 0, 10, 0.05) == []
    assert time.monotonic() - started >= 0.05


def test_duplicate_reports_fault_appends_each_report_twice(store):
    faults = Faults(FaultConfig(duplicate_reports=True))
    exchange = make_exchange(store, faults=faults)
    exchange.submit(market(), Fence("s", 1))
    reports = exchange.feed.read("s", 0, 10, 0)
    assert [r["seq"] for r in reports] == [1, 2]
    assert reports[0]["execution"] == reports[1]["execution"]
    assert faults.snapshot()["counters"]["duplicated_reports"] == 1


def test_restart_keeps_open_orders_feed_and_epochs(tmp_path):
    path = str(tmp_path / "x.db")
    first = OrderStore(path)
    exchange = make_exchange(first)
    exchange.logon("s", 7)
    exchange.submit(limit(time_in_force="gtc"), Fence("s", 7))
    first.close()

    second = OrderStore(path)
    exchange = make_exchange(second)
    with pytest.raises(StaleEpoch):
        exchange.logon("s", 6)
    assert exchange.logon("s", 7) == (7, 1)
    exchange.quotes.set("AAPL", last=Decimal("188"))
    assert exchange.get_order("c-1").status == "filled"
    assert feed(exchange, "s") == [(1, "new", "new"), (2, "fill", "filled")]
    # The order-id sequence carries on: no id is handed out twice.
    assert exchange.submit(market("after-restart")).order.order_id == "EX-000002"
    second.close()


def test_restart_after_a_missed_close_expires_day_orders(tmp_path):
    path = str(tmp_path / "x.db")
    hours = MarketHours(daytime(9, 30), daytime(16), always_open=False)
    clock = FakeClock(MONDAY_NOON)
    first = OrderStore(path)
    exchange = make_exchange(first, clock, hours=hours)
    assert exchange.clock_status()["is_open"]
    exchange.submit(limit("day"))
    exchange.submit(limit("gtc", time_in_force="gtc"))
    first.close()

    clock.now = MONDAY_NOON + timedelta(days=1)  # down through Monday's close
    second = OrderStore(path)
    exchange = make_exchange(second, clock, hours=hours)
    assert exchange.get_order("day").status == "expired"
    assert exchange.get_order("gtc").status == "new"
    second.close()


def test_restart_within_the_same_session_keeps_day_orders(tmp_path):
    path = str(tmp_path / "x.db")
    hours = MarketHours(always_open=False)
    clock = FakeClock(MONDAY_NOON)
    first = OrderStore(path)
    make_exchange(first, clock, hours=hours).submit(limit("day"))
    first.close()
    clock.now = MONDAY_NOON + timedelta(hours=2)
    second = OrderStore(path)
    assert make_exchange(second, clock, hours=hours).get_order("day").status == "new"
    second.close()


def test_clock_status_in_schedule_mode():
    hours = MarketHours(always_open=False)
    saturday = FakeClock(datetime(2024, 5, 4, 12, 0, tzinfo=UTC))
    exchange = make_exchange(OrderStore(), saturday, hours=hours)
    assert exchange.clock_status() == {
        "now": "2024-05-04T12:00:00.000000Z",
        "is_open": False,
        "session_date": "2024-05-06",
        "next_close": "2024-05-06T16:00:00.000000Z",
        "next_open": "2024-05-06T09:30:00.000000Z",
        "always_open": False,
    }
