"""The executor's message handling against real PostgreSQL, with the exchange faked
at its client boundary."""

import itertools
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from broker.events import Event
from broker.exchange_client import (
    ExchangeError,
    ExchangeExecution,
    ExchangeOrder,
    ExchangeRefused,
    ExecutionReport,
    StaleEpoch,
)
from broker.models import (
    Account,
    ConsumerOffset,
    DeadLetter,
    Execution,
    FeedCursor,
    Position,
    Trade,
)
from broker.services.cancellation import trade_request_cancel
from broker.services.placement import trade_place
from executor.booked import BookedOrders
from executor.feed import apply_reports, apply_reports_isolating
from executor.fencing import Fenced, topic_leader_claim
from executor.handlers import MessagePosition, handle_message
from executor.retry import RetryPolicy
from tests.executor.conftest import TOPIC
from tests.factories import fixed_price, give_shares, make_customer

FAST_RETRY = RetryPolicy(first_delay=0.001, max_delay=0.001)
_offsets = itertools.count(1000)


class FakeExchange:
    """Deduplicates by client_order_id like the real one; can fail N times first.
    ``fill`` = "all" fills on arrival, "none" rests, or a Decimal fills that much."""

    def __init__(
        self, *, price="100.00", failures=0, refuse=None, fill="all", stale=False
    ) -> None:
        self.price = Decimal(price)
        self.orders: dict[str, ExchangeOrder] = {}
        self.place_calls = 0
        self.cancel_calls = 0
        self.failures = failures
        self.refuse = refuse
        self.fill = fill
        self.stale = stale
        self._exec = itertools.count(1)

    def _guard(self):
        if self.stale:
            raise StaleEpoch(409, "stale_epoch", "newer epoch seen")
        if self.failures:
            self.failures -= 1
            raise ExchangeError("injected: connection reset")

    def order(self, client_order_id):
        self._guard()
        return self.orders.get(client_order_id)

    def place_order(self, *, client_order_id, symbol, side, quantity, **_):
        self.place_calls += 1
        self._guard()
        if self.refuse:
            raise ExchangeRefused(422, self.refuse, "refused")
        if client_order_id not in self.orders:
            n = len(self.orders) + 1
            filled = {"all": quantity, "none": Decimal(0)}.get(self.fill, self.fill)
            self.orders[client_order_id] = self._state(
                client_order_id, f"EX-{n}", quantity, (), filled
            )
        return self.orders[client_order_id]

    def execute(self, client_order_id, quantity):
        """A later fill of a resting order; returns the new order state."""
        order = self.orders[client_order_id]
        total = order.filled_quantity + Decimal(quantity)
        self.orders[client_order_id] = self._state(
            client_order_id,
            order.order_id,
            self._quantity(order),
            order.executions,
            Decimal(quantity),
            total=total,
        )
        return self.orders[client_order_id]

    def cancel_order(self, client_order_id):
        self.cancel_calls += 1
        self._guard()
        order = self.orders.get(client_order_id)
        if order is None:
            return None
        if order.status in ("new", "partially_filled"):
            order = replace(order, status="canceled")
            self.orders[client_order_id] = order
        return order

    def _quantity(self, order):
        return self.quantities[order.client_order_id]

    def _state(self, cid, order_id, quantity, executions, fill_now, total=None):
        self.quantities = getattr(self, "quantities", {})
        self.quantities[cid] = quantity
        if fill_now:
            executions = (
                *executions,
                ExchangeExecution(
                    exec_id=f"{order_id}-{next(self._exec)}",
                    quantity=fill_now,
                    price=self.price,
                    executed_at=datetime.now(UTC),
                ),
            )
        filled = total if total is not None else fill_now
        status = (
            "filled"
            if filled == quantity
            else ("partially_filled" if filled else "new")
        )
        return ExchangeOrder(
            client_order_id=cid,
            order_id=order_id,
            status=status,
            filled_quantity=filled,
            reject_reason="",
            executions=executions,
        )


def message_for(trade, event_type="trade.placed"):
    return Event(
        event_id=1,
        event_type=event_type,
        payload={"trade_id": str(trade.id), "customer_id": trade.account.customer_id},
    ).encode()


def placed(customer, side="buy", quantity="10", symbol="AAPL", **order):
    trade = trade_place(
        customer=customer,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        order_type=order.pop("order_type", "market"),
        price_source=fixed_price("100.00"),
        **order,
    )
    return trade, message_for(trade)


def cancel_message(customer, trade):
    trade_request_cancel(customer=customer, trade_id=trade.id)
    return message_for(trade, "trade.cancel_requested")


def report(seq, order):
    return ExecutionReport(
        seq=seq, type="fill", client_order_id=order.client_order_id, order=order
    )


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def send(self, **letter) -> None:
        self.sent.append(letter)


def deliver(message, fence, exchange, offset=None, dead_letters=None):
    position = MessagePosition(TOPIC, 0, next(_offsets) if offset is None else offset)
    handle_message(
        message,
        position=position,
        fence=fence,
        exchange=exchange,
        dead_letters=dead_letters or FakeDeadLetters(),
        retry=FAST_RETRY,
    )
    return position


def test_buy_is_filled_and_settled(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer, quantity="10")
    exchange = FakeExchange(price="101.50")

    position = deliver(message, fence, exchange)

    trade.refresh_from_db()
    assert trade.status == Trade.Status.FILLED
    assert (trade.filled_quantity, trade.average_price) == (10, Decimal("101.5"))
    account = Account.objects.get(customer=customer)
    assert account.cash == Decimal("5000.00") - Decimal("1015.00")
    assert account.reserved_cash == 0
    assert Position.objects.get(account=account, symbol="AAPL").quantity == 10
    stored = ConsumerOffset.objects.get(topic=TOPIC, partition=0)
    assert stored.next_offset == position.offset + 1


def test_replayed_message_fills_once(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer)
    exchange = FakeExchange()

    deliver(message, fence, exchange)
    account_after_first = Account.objects.get(customer=customer)
    deliver(message, fence, exchange)
    deliver(message, fence, exchange)

    assert len(exchange.orders) == 1
    assert Execution.objects.filter(trade=trade).count() == 1
    account = Account.objects.get(customer=customer)
    assert (account.cash, account.reserved_cash) == (
        account_after_first.cash,
        account_after_first.reserved_cash,
    )


def test_sell_is_settled_and_releases_shares(fence):
    customer, _ = make_customer("0")
    give_shares(customer, "NVDA", "4")
    trade, message = placed(customer, side="sell", quantity="4", symbol="NVDA")
    deliver(message, fence, FakeExchange(price="50.00"))

    trade.refresh_from_db()
    assert trade.status == Trade.Status.FILLED
    account = Account.objects.get(customer=customer)
    assert account.cash == Decimal("200.00")
    position = Position.objects.get(account=account, symbol="NVDA")
    assert (position.quantity, position.reserved_quantity) == (0, 0)


def test_exchange_outage_is_retried_with_the_same_client_order_id(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer)
    exchange = FakeExchange(failures=3)

    deliver(message, fence, exchange)

    trade.refresh_from_db()
    assert trade.status == Trade.Status.FILLED
    # After the first failure the outcome is unknown: the executor asks the
    # exchange (failing twice more) before it sends again.
    assert exchange.place_calls == 2
    assert list(exchange.orders) == [str(trade.id)]


def test_refused_order_is_rejected_and_its_hold_released(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer)

    deliver(message, fence, FakeExchange(refuse="unknown_symbol"))

    trade.refresh_from_db()
    assert (trade.status, trade.reject_reason) == ("rejected", "unknown_symbol")
    account = Account.objects.get(customer=customer)
    assert (account.cash, account.reserved_cash) == (Decimal("5000.00"), 0)


def test_a_leader_whose_epoch_was_superseded_writes_nothing(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer)
    assert topic_leader_claim(topic=TOPIC, epoch=fence.epoch + 1, holder="successor")
    exchange = FakeExchange()

    with pytest.raises(Fenced):
        deliver(message, fence, exchange)

    trade.refresh_from_db()
    assert trade.status == Trade.Status.ACCEPTED
    assert exchange.place_calls == 0
    assert not ConsumerOffset.objects.filter(topic=TOPIC).exists()


def test_a_lower_epoch_never_overwrites_the_fence(fence):
    assert not topic_leader_claim(topic=TOPIC, epoch=fence.epoch - 1, holder="zombie")
    assert not topic_leader_claim(topic=TOPIC, epoch=fence.epoch, holder="zombie")


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
    ],
)
def test_poison_messages_are_dead_lettered_without_stalling(fence, raw):
    sink = FakeDeadLetters()
    position = deliver(raw, fence, FakeExchange(), dead_letters=sink)
    stored = ConsumerOffset.objects.get(topic=TOPIC, partition=0)
    assert stored.next_offset == position.offset + 1
    [letter] = sink.sent
    assert letter["offset"] == position.offset and letter["raw"] == raw
    recorded = DeadLetter.objects.get(topic=TOPIC, offset=position.offset)
    assert recorded.reason == letter["reason"]


class ExplodingExchange(FakeExchange):
    def place_order(self, **order):
        self.place_calls += 1
        raise RuntimeError("the exchange sent something we cannot parse")


def test_a_message_failing_every_time_is_dead_lettered_after_retries(fence):
    customer, _ = make_customer("5000.00")
    _, message = placed(customer)
    sink, exchange = FakeDeadLetters(), ExplodingExchange()
    position = deliver(message, fence, exchange, dead_letters=sink)
    assert exchange.place_calls == FAST_RETRY.poison_attempts
    assert "RuntimeError" in sink.sent[0]["reason"]
    stored = ConsumerOffset.objects.get(topic=TOPIC, partition=0)
    assert stored.next_offset == position.offset + 1


def test_limit_buy_rests_then_fills_in_parts_from_the_feed(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(
        customer, quantity="10", order_type="limit", limit_price=Decimal("99.00")
    )
    account = Account.objects.get(customer=customer)
    assert account.reserved_cash == Decimal("990.00")  # 10 x limit price
    exchange = FakeExchange(price="98.50", fill="none")

    deliver(message, fence, exchange)
    trade.refresh_from_db()
    assert trade.status == Trade.Status.SUBMITTED

    first = exchange.execute(str(trade.id), "4")
    apply_reports([report(1, first)], fence=fence, session=TOPIC)
    trade.refresh_from_db()
    assert (trade.status, trade.filled_quantity) == ("partially_filled", 4)

    second = exchange.execute(str(trade.id), "6")
    # The feed may repeat itself: duplicates and old states change nothing.
    apply_reports(
        [report(2, first), report(3, second), report(4, second)],
        fence=fence,
        session=TOPIC,
    )
    trade.refresh_from_db()
    assert (trade.status, trade.filled_quantity) == ("filled", 10)
    assert Execution.objects.filter(trade=trade).count() == 2
    account.refresh_from_db()
    assert account.cash == Decimal("5000.00") - Decimal("985.00")
    assert account.reserved_cash == 0  # 5.00 of unused hold released
    assert FeedCursor.objects.get(session=TOPIC).last_seq == 4


def test_cancel_before_the_order_was_sent_never_reaches_the_exchange(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer)
    cancel = cancel_message(customer, trade)
    exchange = FakeExchange()

    deliver(message, fence, exchange)
    deliver(cancel, fence, exchange)

    trade.refresh_from_db()
    assert trade.status == Trade.Status.CANCELED
    assert exchange.place_calls == 0
    assert Account.objects.get(customer=customer).reserved_cash == 0


def test_a_cancel_committed_between_read_and_submit_stops_the_send(fence, monkeypatch):
    """The customer's cancel lands after the executor read the accepted trade but
    before its accepted -> submitted update: the order must not go out."""
    import executor.handlers as handlers

    customer, _ = make_customer("5000.00")
    trade, message = placed(customer)
    mark_submitted = handlers.trade_mark_submitted

    def cancel_first(**kwargs):
        trade_request_cancel(customer=customer, trade_id=trade.id)
        return mark_submitted(**kwargs)

    monkeypatch.setattr(handlers, "trade_mark_submitted", cancel_first)
    exchange = FakeExchange()

    deliver(message, fence, exchange)

    trade.refresh_from_db()
    assert trade.status == Trade.Status.CANCELED
    assert exchange.place_calls == 0
    assert Account.objects.get(customer=customer).reserved_cash == 0


def test_cancel_of_a_partially_filled_resting_order_releases_the_rest(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(
        customer, quantity="10", order_type="limit", limit_price=Decimal("100.00")
    )
    exchange = FakeExchange(fill=Decimal("3"))
    deliver(message, fence, exchange)
    deliver(cancel_message(customer, trade), fence, exchange)

    trade.refresh_from_db()
    assert (trade.status, trade.filled_quantity) == ("canceled", 3)
    account = Account.objects.get(customer=customer)
    assert account.cash == Decimal("4700.00")
    assert account.reserved_cash == 0
    assert Position.objects.get(account=account, symbol="AAPL").quantity == 3


@pytest.mark.parametrize("ending", ["canceled", "expired"])
def test_a_limit_sell_that_ends_part_filled_releases_the_rest_of_its_shares(
    fence, ending
):
    """The sell side of 'every terminal state releases the unused hold': shares
    instead of cash."""
    customer, _ = make_customer("0.00")
    give_shares(customer, "AAPL", "10")
    trade, message = placed(
        customer,
        side="sell",
        quantity="6",
        order_type="limit",
        limit_price=Decimal("100.00"),
    )
    position = Position.objects.get(account__customer=customer, symbol="AAPL")
    assert (position.quantity, position.reserved_quantity) == (10, 6)
    exchange = FakeExchange(price="101.00", fill=Decimal("2"))
    deliver(message, fence, exchange)
    final = replace(exchange.orders[str(trade.id)], status=ending)
    apply_reports([report(1, final)], fence=fence, session=TOPIC)

    trade.refresh_from_db()
    assert (trade.status, trade.filled_quantity) == (ending, 2)
    position.refresh_from_db()
    assert (position.quantity, position.reserved_quantity) == (8, 0)
    account = Account.objects.get(customer=customer)
    assert (account.cash, account.reserved_cash) == (Decimal("202.00"), 0)


def test_a_cancel_that_loses_the_race_to_a_fill_ends_filled(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(
        customer, quantity="5", order_type="limit", limit_price=Decimal("100.00")
    )
    exchange = FakeExchange(fill="none")
    deliver(message, fence, exchange)
    cancel = cancel_message(customer, trade)
    exchange.execute(str(trade.id), "5")  # the fill lands before the cancel

    deliver(cancel, fence, exchange)

    trade.refresh_from_db()
    assert (trade.status, trade.filled_quantity) == ("filled", 5)
    assert trade.canceled_at is None


def test_a_stale_epoch_at_the_exchange_fences_the_leader(fence):
    customer, _ = make_customer("5000.00")
    _, message = placed(customer)
    with pytest.raises(Fenced):
        deliver(message, fence, FakeExchange(stale=True))
    assert not ConsumerOffset.objects.filter(topic=TOPIC).exists()


def test_reports_are_not_applied_by_a_superseded_leader(fence):
    customer, _ = make_customer("5000.00")
    trade, message = placed(customer, order_type="limit", limit_price=Decimal("99"))
    exchange = FakeExchange(fill="none")
    deliver(message, fence, exchange)
    assert topic_leader_claim(topic=TOPIC, epoch=fence.epoch + 5, holder="next")

    with pytest.raises(Fenced):
        apply_reports(
            [report(1, exchange.execute(str(trade.id), "10"))],
            fence=fence,
            session=TOPIC,
        )
    trade.refresh_from_db()
    assert trade.filled_quantity == 0
    assert not FeedCursor.objects.filter(session=TOPIC).exists()


def test_execution_ids_repeated_by_another_order_are_still_booked(fence):
    """A venue promises exec ids unique among its own orders only (ids restart after
    a reset or a new trading day): an id another trade already holds is a new
    fill for this trade, never a skipped one or a stuck topic."""
    customer, _ = make_customer("5000.00")
    before_reset, _ = placed(customer, quantity="2")
    deliver(message_for(before_reset), fence, FakeExchange())
    after_reset, message = placed(
        customer, quantity="3", order_type="limit", limit_price=Decimal("100.00")
    )
    venue = FakeExchange(fill="none")  # numbering starts again at EX-1-1
    deliver(message, fence, venue)

    fill = venue.execute(str(after_reset.id), "3")
    first_fill = Execution.objects.get(trade=before_reset)
    assert fill.executions[0].exec_id == first_fill.exec_id
    apply_reports([report(1, fill)], fence=fence, session=TOPIC)
    # Replayed once the trade is terminal: still booked once.
    apply_reports([report(2, fill)], fence=fence, session=TOPIC)

    after_reset.refresh_from_db()
    assert (after_reset.status, after_reset.filled_quantity) == ("filled", 3)
    assert Execution.objects.filter(trade=after_reset).count() == 1
    position = Position.objects.get(account__customer=customer, symbol="AAPL")
    assert position.quantity == 5


def test_a_report_failing_every_time_is_dead_lettered_and_the_feed_moves_on(fence):
    """The feed's poison message: a report the books refuse every time (here a fill
    far above the limit would take cash below zero) is set aside with its reason
    after a few attempts; the reports behind it are applied."""
    customer, _ = make_customer("1000.00")
    venue = FakeExchange(price="99.00", fill="none")
    poisoned, message = placed(
        customer, quantity="1", order_type="limit", limit_price=Decimal("100.00")
    )
    deliver(message, fence, venue)
    healthy, message = placed(
        customer, quantity="1", order_type="limit", limit_price=Decimal("100.00")
    )
    deliver(message, fence, venue)
    venue.price = Decimal("5000.00")
    refused = venue.execute(str(poisoned.id), "1")
    venue.price = Decimal("99.00")
    fine = venue.execute(str(healthy.id), "1")

    cursor = apply_reports_isolating(
        [report(7, refused), report(8, fine)],
        fence=fence,
        session=TOPIC,
        retry=FAST_RETRY,
    )

    assert cursor == 8
    assert FeedCursor.objects.get(session=TOPIC).last_seq == 8
    healthy.refresh_from_db()
    assert healthy.status == Trade.Status.FILLED
    poisoned.refresh_from_db()
    assert poisoned.status == Trade.Status.SUBMITTED  # left to reconciliation
    letter = DeadLetter.objects.get(topic=f"feed:{TOPIC}")
    assert (letter.offset, letter.epoch) == (7, fence.epoch)
    assert "IntegrityError" in letter.reason
    assert str(poisoned.id) in letter.payload
    account = Account.objects.get(customer=customer)
    assert account.cash == Decimal("901.00")  # only the healthy fill booked


def test_orders_booked_terminal_are_known_to_the_feed_only_after_commit(fence):
    """The feed passes over a report that only repeats what the leader booked; a
    report with an execution it has not booked is never passed over."""
    customer, _ = make_customer("5000.00")
    booked = BookedOrders()
    venue = FakeExchange(fill="none")
    resting, message = placed(
        customer, quantity="2", order_type="limit", limit_price=Decimal("100.00")
    )
    handle_message(
        message,
        position=MessagePosition(TOPIC, 0, next(_offsets)),
        fence=fence,
        exchange=venue,
        dead_letters=FakeDeadLetters(),
        retry=FAST_RETRY,
        booked=booked,
    )
    partial = venue.execute(str(resting.id), "1")
    assert not booked.covers(report(1, partial))  # still open: nothing recorded
    apply_reports([report(1, partial)], fence=fence, session=TOPIC, booked=booked)
    assert not booked.covers(report(1, partial))

    market, message = placed(customer, quantity="1")
    exchange = FakeExchange()
    handle_message(
        message,
        position=MessagePosition(TOPIC, 0, next(_offsets)),
        fence=fence,
        exchange=exchange,
        dead_letters=FakeDeadLetters(),
        retry=FAST_RETRY,
        booked=booked,
    )
    answer = exchange.orders[str(market.id)]
    assert booked.covers(report(2, answer))
    # An execution this process never booked is not covered.
    later = replace(
        answer,
        executions=(
            *answer.executions,
            replace(answer.executions[0], exec_id="EX-late-1"),
        ),
    )
    assert not booked.covers(report(3, later))

    rest = venue.execute(str(resting.id), "1")
    apply_reports([report(4, rest)], fence=fence, session=TOPIC, booked=booked)
    assert booked.covers(report(4, rest))


def filled_order(client_order_id: str) -> ExchangeOrder:
    """A filled order with no executions (all BookedOrders looks at)."""
    return ExchangeOrder(
        client_order_id=client_order_id,
        order_id=f"EX-{client_order_id}",
        status="filled",
        filled_quantity=Decimal(1),
        reject_reason="",
        executions=(),
    )


def test_booked_orders_are_bounded():
    booked = BookedOrders(capacity=2)
    orders = [filled_order(f"o{n}") for n in range(3)]
    for order in orders:
        booked.add(order)
    assert [booked.covers(report(n, o)) for n, o in enumerate(orders)] == [
        False,
        True,
        True,
    ]


def test_the_feed_waits_for_an_order_the_leader_has_in_flight():
    booked = BookedOrders()
    answer = filled_order("o1")
    echo = report(1, answer)
    booked.begin(["o1"])
    settled = threading.Event()

    def feed() -> None:
        booked.wait_settled([echo], timeout=10)
        settled.set()

    waiter = threading.Thread(target=feed)
    waiter.start()
    assert not settled.wait(0.2)  # still in flight: the feed holds back
    booked.add(answer)
    booked.end(["o1"])
    assert settled.wait(5)
    waiter.join()
    assert booked.covers(echo)
    # Never longer than its timeout, whatever the leader does.
    booked.begin(["o1"])
    started = time.monotonic()
    booked.wait_settled([echo], timeout=0.1)
    assert time.monotonic() - started < 5
