"""The executor's message handling against real PostgreSQL, with the exchange faked
at its client boundary."""

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from broker.errors import Fenced
from broker.events import Event
from broker.exchange_client import (
    ExchangeError,
    ExchangeExecution,
    ExchangeOrder,
    ExchangeRefused,
)
from broker.models import Account, ConsumerOffset, Execution, Position, Trade
from broker.services.leadership import topic_leader_claim
from broker.services.placement import trade_place
from executor.fencing import Fence
from executor.handlers import MessagePosition, RetryPolicy, handle_message
from tests.factories import fixed_price, give_shares, make_customer

TOPIC = "unit.trades.0"
FAST_RETRY = RetryPolicy(first_delay=0.001, max_delay=0.001)
_offsets = itertools.count(1000)


class FakeExchange:
    """Deduplicates by client_order_id like the real one; can fail N times first."""

    def __init__(self, *, price="100.00", failures=0, refuse=None) -> None:
        self.price = Decimal(price)
        self.orders: dict[str, ExchangeOrder] = {}
        self.place_calls = 0
        self.failures = failures
        self.refuse = refuse

    def order(self, client_order_id):
        return self.orders.get(client_order_id)

    def place_order(self, *, client_order_id, symbol, side, quantity, **_):
        self.place_calls += 1
        if self.failures:
            self.failures -= 1
            raise ExchangeError("injected: connection reset")
        if self.refuse:
            raise ExchangeRefused(422, self.refuse, "refused")
        if client_order_id not in self.orders:
            n = len(self.orders) + 1
            self.orders[client_order_id] = ExchangeOrder(
                client_order_id=client_order_id,
                order_id=f"EX-{n}",
                status="filled",
                filled_quantity=quantity,
                reject_reason="",
                executions=(
                    ExchangeExecution(
                        exec_id=f"EX-{n}-1",
                        quantity=quantity,
                        price=self.price,
                        executed_at=datetime.now(UTC),
                    ),
                ),
            )
        return self.orders[client_order_id]


@pytest.fixture
def fence(db):
    epoch = 10
    assert topic_leader_claim(topic=TOPIC, epoch=epoch, holder="unit-test")
    return Fence(topic=TOPIC, epoch=epoch, still_leader=lambda: True)


def placed(customer, side="buy", quantity="10", symbol="AAPL"):
    trade = trade_place(
        customer=customer,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        order_type="market",
        price_source=fixed_price("100.00"),
    )
    message = Event(
        event_id=1,
        event_type="trade.placed",
        payload={"trade_id": str(trade.id), "customer_id": customer.pk},
    ).encode()
    return trade, message


def deliver(message, fence, exchange, offset=None):
    position = MessagePosition(TOPIC, 0, next(_offsets) if offset is None else offset)
    handle_message(
        message, position=position, fence=fence, exchange=exchange, retry=FAST_RETRY
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
    assert exchange.place_calls == 4
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
    [b"", b"not json", b"{}", b'{"event_id": 1, "event_type": "x", "payload": 3}'],
)
def test_undecodable_messages_are_skipped_without_stalling(fence, raw):
    position = deliver(raw, fence, FakeExchange())
    stored = ConsumerOffset.objects.get(topic=TOPIC, partition=0)
    assert stored.next_offset == position.offset + 1
