"""From Kafka messages to FIX messages, against real PostgreSQL: the trade marked
submitted, its order journaled and the offset stored in one fenced transaction;
cancels and reconciliations; poison messages dead-lettered without stalling.

The session is a real FixSession that is not connected: what it would send is
what it journals (the wire is the session tests' concern)."""

from __future__ import annotations

import itertools
import threading
from decimal import Decimal

import pytest

from broker.events import Event, EventType
from broker.models import (
    Account,
    ConsumerOffset,
    DeadLetter,
    FixJournal,
    Trade,
    TradeEvent,
)
from broker.services.cancellation import trade_request_cancel, trade_request_reconcile
from broker.services.placement import trade_place
from executor import orderflow
from executor.fencing import Fenced, topic_leader_claim
from executor.fix.codec import MsgType, Tag, body_fields
from executor.fix.session import FixSession, SessionConfig
from executor.orderflow import (
    DEAD_LETTERED,
    HANDLED,
    MessagePosition,
    Window,
    handle_messages,
)
from executor.retry import RetryPolicy
from tests.executor.conftest import TOPIC
from tests.factories import fixed_price, make_customer

pytestmark = pytest.mark.django_db
FAST_RETRY = RetryPolicy(first_delay=0.001, max_delay=0.001)
SENDER = "BROKER-0"
_offsets = itertools.count(1000)
_events = itertools.count(1)


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, **letter) -> None:
        self.sent.append(letter)


@pytest.fixture
def session(fence) -> FixSession:
    fix = FixSession(
        config=SessionConfig(
            sender_comp_id=SENDER, target_comp_id="EXCHANGE", host="-", port=0
        ),
        topic=TOPIC,
        fence=fence,
        on_app=lambda messages: [],
        stop=threading.Event(),
        lost=threading.Event(),
    )
    fix.prepare()
    return fix


def event(event_type: str, trade: Trade) -> bytes:
    return Event(
        event_id=next(_events),
        event_type=event_type,
        payload={"trade_id": str(trade.id), "customer_id": 1},
    ).encode()


def deliver(raws, fence, session, sink=None, window=None) -> list[str]:
    messages = [(raw, MessagePosition(TOPIC, 0, next(_offsets))) for raw in raws]
    return handle_messages(
        messages,
        fence=fence,
        session=session,
        dead_letters=sink or FakeDeadLetters(),
        window=window,
        retry=FAST_RETRY,
    )


def place(customer, **overrides) -> Trade:
    fields = {
        "symbol": "AAPL",
        "side": "buy",
        "quantity": Decimal("2"),
        "order_type": "limit",
        "limit_price": Decimal("100"),
        **overrides,
    }
    return trade_place(customer=customer, price_source=fixed_price("100.00"), **fields)


def journal(msg_type: str | None = None) -> list[FixJournal]:
    rows = FixJournal.objects.filter(session=SENDER).order_by("seq")
    return list(rows.filter(msg_type=msg_type) if msg_type else rows)


def stored_offset() -> int:
    return ConsumerOffset.objects.get(topic=TOPIC, partition=0).next_offset


def test_a_run_of_placements_is_journaled_in_order_with_the_offset(fence, session):
    customer, _ = make_customer("5000.00")
    trades = [place(customer, symbol=s) for s in ("AAPL", "MSFT", "NVDA")]
    outcomes = deliver(
        [event(EventType.TRADE_PLACED, t) for t in trades], fence, session
    )
    assert outcomes == [HANDLED] * 3
    orders = journal(MsgType.NEW_ORDER_SINGLE)
    assert [row.trade_id for row in orders] == [t.id for t in trades]
    assert [row.seq for row in orders] == [1, 2, 3]
    fields = dict(body_fields(orders[1].body))
    assert fields[Tag.CL_ORD_ID] == str(trades[1].id)
    assert (fields[Tag.SYMBOL], fields[Tag.SIDE]) == ("MSFT", "1")
    assert (fields[Tag.ORD_TYPE], fields[Tag.PRICE]) == ("2", "100")
    assert (fields[Tag.ORDER_QTY], fields[Tag.TIME_IN_FORCE]) == ("2", "0")
    for trade in trades:
        trade.refresh_from_db()
        assert trade.status == Trade.Status.SUBMITTED
    handled = TradeEvent.objects.filter(trade=trades[0], kind="handled").get()
    assert handled.detail["outcome"] == "sent" and handled.epoch == fence.epoch
    assert stored_offset() > 0


def test_a_market_buy_goes_as_a_limit_at_its_collar(fence, session):
    customer, _ = make_customer("5000.00")
    trade = place(customer, order_type="market", limit_price=None)
    deliver([event(EventType.TRADE_PLACED, trade)], fence, session)
    fields = dict(body_fields(journal()[0].body))
    assert (fields[Tag.ORD_TYPE], fields[Tag.PRICE]) == ("2", "105")


def test_a_message_delivered_twice_sends_one_order(fence, session):
    """The outbox is published at least once: the same event at a later offset
    finds the trade submitted and sends nothing."""
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    raw = event(EventType.TRADE_PLACED, trade)
    deliver([raw], fence, session)
    deliver([raw], fence, session)
    assert len(journal(MsgType.NEW_ORDER_SINGLE)) == 1


def test_a_cancel_before_sending_never_reaches_the_exchange(fence, session):
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    trade_request_cancel(customer=customer, trade_id=trade.id)
    deliver(
        [
            event(EventType.TRADE_PLACED, trade),
            event(EventType.TRADE_CANCEL_REQUESTED, trade),
        ],
        fence,
        session,
    )
    trade.refresh_from_db()
    assert trade.status == Trade.Status.CANCELED
    assert journal() == []
    assert Account.objects.get(customer=customer).reserved_cash == 0


def test_a_cancel_committed_between_read_and_submit_stops_the_send(
    fence, session, monkeypatch
):
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    mark_submitted = orderflow.trades_mark_submitted

    def cancel_first(**kwargs):
        trade_request_cancel(customer=customer, trade_id=trade.id)
        return mark_submitted(**kwargs)

    monkeypatch.setattr(orderflow, "trades_mark_submitted", cancel_first)
    deliver([event(EventType.TRADE_PLACED, trade)], fence, session)
    trade.refresh_from_db()
    assert trade.status == Trade.Status.CANCELED
    assert journal() == []


def test_a_cancel_of_a_sent_order_is_requested_once(fence, session):
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    deliver([event(EventType.TRADE_PLACED, trade)], fence, session)
    trade_request_cancel(customer=customer, trade_id=trade.id)
    raw = event(EventType.TRADE_CANCEL_REQUESTED, trade)
    deliver([raw, raw], fence, session)
    [cancel] = journal(MsgType.ORDER_CANCEL_REQUEST)
    fields = dict(body_fields(cancel.body))
    assert fields[Tag.ORIG_CL_ORD_ID] == str(trade.id)
    assert fields[Tag.CL_ORD_ID] == f"{trade.id}:C"


def test_a_reconcile_asks_for_the_status_of_a_sent_order_only(fence, session):
    customer, _ = make_customer("5000.00")
    sent, unsent = place(customer), place(customer)
    deliver([event(EventType.TRADE_PLACED, sent)], fence, session)
    for trade in (sent, unsent):
        trade.refresh_from_db()
        trade_request_reconcile(trade=trade, requested_by="test")
    deliver(
        [
            event(EventType.TRADE_RECONCILE_REQUESTED, sent),
            event(EventType.TRADE_RECONCILE_REQUESTED, unsent),
        ],
        fence,
        session,
    )
    [status] = journal(MsgType.ORDER_STATUS_REQUEST)
    assert status.trade_id == sent.id


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\x00 NUL bytes \xff",
        b"{}",
        b'{"event_id": 1, "event_type": "x", "payload": 3}',
        b'{"event_id": 1, "event_type": "trade.unknown", "payload": {}}',
        b'{"event_id": 1, "event_type": "trade.placed", "payload": {"trade_id": 7}}',
        # int() of an infinite float: OverflowError.
        b'{"event_id": 1e999, "event_type": "trade.placed", "payload": {}}',
        # nested past the parser's recursion limit: RecursionError.
        b'{"event_id": 1, "event_type": "trade.placed", "payload": '
        + b"[" * 100000
        + b"]" * 100000
        + b"}",
    ],
)
def test_poison_messages_are_dead_lettered_and_the_topic_moves_on(fence, session, raw):
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    sink = FakeDeadLetters()
    outcomes = deliver(
        [raw, event(EventType.TRADE_PLACED, trade)], fence, session, sink
    )
    assert outcomes == [DEAD_LETTERED, HANDLED]
    [letter] = sink.sent
    assert letter["raw"] == raw
    recorded = DeadLetter.objects.get(topic=TOPIC, offset=letter["offset"])
    assert recorded.reason == letter["reason"]
    assert len(journal(MsgType.NEW_ORDER_SINGLE)) == 1


def test_a_message_failing_every_time_is_dead_lettered_and_the_rest_go(
    fence, session, monkeypatch
):
    customer, _ = make_customer("5000.00")
    bad, good = place(customer), place(customer)
    plan = orderflow._PLANNERS[EventType.TRADE_PLACED]
    calls = []

    def explode_on_bad(work, outbox, fence, session):
        calls.append(work.trade_id)
        if work.trade_id == bad.id:
            raise RuntimeError("cannot handle this one")
        return plan(work, outbox, fence, session)

    monkeypatch.setitem(orderflow._PLANNERS, EventType.TRADE_PLACED, explode_on_bad)
    sink = FakeDeadLetters()
    outcomes = deliver(
        [event(EventType.TRADE_PLACED, t) for t in (bad, good)], fence, session, sink
    )
    assert outcomes == [DEAD_LETTERED, HANDLED]
    assert "RuntimeError: cannot handle this one" in sink.sent[0]["reason"]
    assert calls.count(bad.id) == 1 + FAST_RETRY.poison_attempts
    assert [row.trade_id for row in journal()] == [good.id]
    bad.refresh_from_db()
    assert bad.status == Trade.Status.ACCEPTED  # left for reconciliation/ops


def test_a_deposed_leader_journals_nothing(fence, session):
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    assert topic_leader_claim(topic=TOPIC, epoch=fence.epoch + 1, holder="next")
    with pytest.raises(Fenced):
        deliver([event(EventType.TRADE_PLACED, trade)], fence, session)
    trade.refresh_from_db()
    assert trade.status == Trade.Status.ACCEPTED
    assert journal() == []


def test_the_window_counts_unacknowledged_orders(fence, session):
    customer, _ = make_customer("5000.00")
    trades = [place(customer) for _ in range(2)]
    window = Window(topic=TOPIC, limit=2)
    deliver(
        [event(EventType.TRADE_PLACED, t) for t in trades],
        fence,
        session,
        window=window,
    )
    assert window.in_flight() == 2
    assert not window.wait_for_room(0.05)
    window.ack(str(trades[0].id))
    assert window.wait_for_room(0.05)


def test_an_unanswered_order_stops_counting_after_a_while():
    window = Window(topic=TOPIC, limit=1, expire_seconds=0.05)
    window.sent(["lost"])
    assert window.wait_for_room(2)
