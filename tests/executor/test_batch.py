"""Several messages of a poll handled together (executor/batch.py), against real
PostgreSQL with the exchange faked at its client boundary."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from broker.models import Account, ConsumerOffset, Execution, Trade, TradeEvent
from executor.batch import handle_messages
from executor.booked import BookedOrders
from executor.fencing import Fenced, topic_leader_claim
from executor.handlers import DEAD_LETTERED, HANDLED, MessagePosition
from tests.executor.conftest import TOPIC
from tests.executor.test_handlers import (
    FAST_RETRY,
    FakeDeadLetters,
    FakeExchange,
    cancel_message,
    placed,
    report,
)
from tests.factories import make_customer


class RecordingExchange(FakeExchange):
    """Remembers the order in which orders arrived; one client_order_id can be made
    to fail with something unparseable every time."""

    def __init__(self, *, poison: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[str] = []
        self.poison = poison

    def place_order(self, *, client_order_id, **order):
        self.arrivals.append(client_order_id)
        if client_order_id == self.poison:
            self.place_calls += 1
            raise RuntimeError("the exchange sent something we cannot parse")
        return super().place_order(client_order_id=client_order_id, **order)


def run(messages, fence, exchange, first_offset=100, **kwargs):
    items = [
        (raw, MessagePosition(TOPIC, 0, first_offset + n))
        for n, raw in enumerate(messages)
    ]
    return handle_messages(
        items,
        fence=fence,
        exchange=exchange,
        dead_letters=kwargs.pop("dead_letters", FakeDeadLetters()),
        retry=FAST_RETRY,
        **kwargs,
    )


def count(queries, fragment: str) -> int:
    return sum(1 for q in queries.captured_queries if fragment in q["sql"])


def test_a_run_of_placements_shares_one_transaction_per_phase(fence):
    customer, _ = make_customer("50000.00")
    trades, messages = zip(
        *(placed(customer, quantity="2") for _ in range(5)), strict=True
    )
    exchange, booked = RecordingExchange(), BookedOrders()

    with CaptureQueriesContext(connection) as queries:
        outcomes = run(messages, fence, exchange, booked=booked)

    assert outcomes == [HANDLED] * 5
    # One fenced transaction per phase (the test's own transaction turns them into
    # savepoints, so count their epoch checks), one offset write.
    assert count(queries, "FROM broker_topicleader") == 2
    assert count(queries, "INSERT INTO broker_consumeroffset") == 1
    # Sent in message order: a customer's orders reach the exchange as placed.
    assert exchange.arrivals == [str(t.id) for t in trades]
    for trade in trades:
        trade.refresh_from_db()
        assert (trade.status, trade.filled_quantity) == ("filled", 2)
        handled = TradeEvent.objects.get(trade=trade, kind="handled")
        assert handled.detail["action"] == "place_order"
        assert (handled.epoch, handled.detail["executor"]) == (10, "unit-test")
        assert booked.covers(report(1, exchange.orders[str(trade.id)]))
    assert ConsumerOffset.objects.get(topic=TOPIC, partition=0).next_offset == 105
    account = Account.objects.get(customer=customer)
    assert account.cash == Decimal("50000.00") - 5 * Decimal("200.00")
    assert account.reserved_cash == 0


def test_a_replayed_run_changes_nothing(fence):
    customer, _ = make_customer("50000.00")
    trades, messages = zip(*(placed(customer) for _ in range(3)), strict=True)
    exchange = RecordingExchange()
    run(messages, fence, exchange)
    cash = Account.objects.get(customer=customer).cash

    assert run(messages, fence, exchange) == [HANDLED] * 3
    assert exchange.place_calls == 3  # terminal trades are not sent again
    assert Execution.objects.filter(trade__in=trades).count() == 3
    assert Account.objects.get(customer=customer).cash == cash


def test_a_cancel_in_the_middle_keeps_the_order_of_the_messages(fence):
    customer, _ = make_customer("50000.00")
    first, m1 = placed(customer)
    resting, m2 = placed(
        customer, quantity="1", order_type="limit", limit_price=Decimal("90.00")
    )
    exchange = RecordingExchange(fill="none")
    run([m1, m2], fence, exchange)
    last, m3 = placed(customer)

    outcomes = run([cancel_message(customer, resting), m3], fence, exchange, 200)

    assert outcomes == [HANDLED, HANDLED]
    resting.refresh_from_db()
    assert resting.status == Trade.Status.CANCELED
    assert exchange.arrivals == [str(first.id), str(resting.id), str(last.id)]
    assert ConsumerOffset.objects.get(topic=TOPIC, partition=0).next_offset == 202


def test_a_poison_message_in_a_run_falls_back_to_one_by_one(fence):
    customer, _ = make_customer("50000.00")
    trades, messages = zip(*(placed(customer) for _ in range(3)), strict=True)
    exchange = RecordingExchange(poison=str(trades[1].id))
    sink = FakeDeadLetters()

    outcomes = run(messages, fence, exchange, dead_letters=sink)

    assert outcomes == [HANDLED, DEAD_LETTERED, HANDLED]
    statuses = [Trade.objects.get(id=t.id).status for t in trades]
    assert statuses == ["filled", "submitted", "filled"]  # left to reconciliation
    assert sink.sent[0]["offset"] == 101
    assert ConsumerOffset.objects.get(topic=TOPIC, partition=0).next_offset == 103


def test_a_leader_deposed_during_the_run_books_nothing(fence):
    customer, _ = make_customer("50000.00")
    trades, messages = zip(*(placed(customer) for _ in range(3)), strict=True)

    class DeposingExchange(RecordingExchange):
        def place_order(self, **order):
            answer = super().place_order(**order)
            # A successor takes over while this leader's orders are in flight.
            topic_leader_claim(topic=TOPIC, epoch=fence.epoch + 1, holder="next")
            return answer

    with pytest.raises(Fenced):
        run(messages, fence, DeposingExchange())

    assert not Execution.objects.filter(trade__in=trades).exists()
    assert not ConsumerOffset.objects.filter(topic=TOPIC).exists()
