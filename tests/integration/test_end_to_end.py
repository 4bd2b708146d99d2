"""A trade's whole journey on the real stack: HTTP → PostgreSQL → relay → Kafka →
elected executor → exchange_mock → settlement. Each test creates its own customers
and its data is committed (the processes must see it)."""

from __future__ import annotations

import math
import signal
from collections import Counter
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from django.conf import settings

from broker.audit import ledger_discrepancies
from broker.events import Event
from broker.models import Account, ConsumerOffset, Execution, OutboxEvent, Position
from broker.topics import all_topics, topic_for_customer
from devstack.wait import wait_until
from tests.integration.conftest import (
    customer_on_topic,
    place_over_http,
    wait_for_status,
)

pytestmark = pytest.mark.integration


def test_trade_placed_over_http_is_filled_at_the_exchange(system, live_db):
    customer, token = customer_on_topic(all_topics()[0], cash="50000.00")

    placed = place_over_http(system, token, symbol="MSFT", quantity="3")
    assert placed["status"] == "accepted"
    filled = wait_for_status(system, token, placed["id"], "filled")

    [order] = system.exchange_orders(placed["id"])
    assert order["status"] == "filled"
    [fill] = filled["fills"]
    assert fill["exec_id"] == order["executions"][0]["exec_id"]
    assert Decimal(filled["filled_quantity"]) == 3
    assert Decimal(filled["average_price"]) == Decimal(order["average_price"])

    account = Account.objects.get(customer=customer)
    cost = (Decimal(fill["quantity"]) * Decimal(fill["price"])).quantize(
        Decimal("0.01")
    )
    assert account.cash == Decimal("50000.00") - cost
    assert account.reserved_cash == 0
    assert Position.objects.get(account=account, symbol="MSFT").quantity == 3
    assert ledger_discrepancies(account_ids=[account.pk]) == []
    event = OutboxEvent.objects.get(payload__trade_id=placed["id"])
    assert event.published_at is not None


def test_leadership_is_balanced_across_the_live_executors(system, live_db):
    """The first executor to start took every topic; as the others joined it
    resigned topics until nobody leads more than ceil(T/N)."""
    share = math.ceil(len(all_topics()) / len(system.executors))

    def balanced() -> bool:
        leaders = system.leaders()
        holders = Counter(leader.holder for leader in leaders.values())
        return (
            set(leaders) == set(all_topics())
            and set(holders) <= set(system.executors)
            and max(holders.values()) <= share
        )

    wait_until(balanced, timeout=60, what=f"at most {share} topics per executor")


def test_leadership_rebalances_when_an_executor_leaves(system, live_db):
    """An executor that stops (SIGTERM: it leaves its elections) hands its topics
    to the others; once stable nobody leads more than ceil(T/N) of the remaining
    N, and the topic it led fills again."""
    wait_until(
        lambda: len({leader.holder for leader in system.leaders().values()}) > 1,
        timeout=60,
        what="leadership spread over the executors",
    )
    holders = Counter(leader.holder for leader in system.leaders().values())
    leaving, _ = holders.most_common(1)[0]
    topic = next(
        t for t, leader in system.leaders().items() if leader.holder == leaving
    )
    remaining = set(system.executors) - {leaving}
    share = math.ceil(len(all_topics()) / len(remaining))

    system.executors[leaving].signal(signal.SIGTERM)
    assert system.executors[leaving].popen.wait(60) == 0
    del system.executors[leaving]

    def rebalanced() -> bool:
        leaders = system.leaders()
        counts = Counter(leader.holder for leader in leaders.values())
        return (
            set(leaders) == set(all_topics())
            and set(counts) <= remaining
            and max(counts.values()) <= share
        )

    wait_until(rebalanced, timeout=60, what=f"at most {share} topics per executor")
    _, token = customer_on_topic(topic)
    trade = place_over_http(system, token, quantity="1")
    wait_for_status(system, token, trade["id"], "filled")

    # Leave three live candidates for whatever runs next.
    system.start_executor(f"{leaving}-rejoined")
    system.wait_all_topics_led(by=set(system.executors))


def test_replaying_a_kafka_message_does_not_fill_twice(system, live_db):
    customer, token = customer_on_topic(all_topics()[1])
    placed = place_over_http(system, token, quantity="4")
    wait_for_status(system, token, placed["id"], "filled")
    account_before = Account.objects.get(customer=customer)

    event = OutboxEvent.objects.get(payload__trade_id=placed["id"])
    replayed: list = []
    producer = Producer({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS})
    for _ in range(3):
        producer.produce(
            event.topic,
            key=event.key.encode(),
            value=Event(event.id, event.event_type, event.payload).encode(),
            on_delivery=lambda err, msg: replayed.append(msg),
        )
    assert producer.flush(30) == 0
    last = max(msg.offset() for msg in replayed)

    wait_until(
        lambda: ConsumerOffset.objects.filter(
            topic=event.topic, next_offset__gt=last
        ).exists(),
        timeout=30,
        what="the executor to consume the replayed messages",
    )
    assert len(system.exchange_orders(placed["id"])) == 1
    assert Execution.objects.filter(trade_id=placed["id"]).count() == 1
    account = Account.objects.get(customer=customer)
    assert (account.cash, account.reserved_cash) == (
        account_before.cash,
        account_before.reserved_cash,
    )
    assert ledger_discrepancies(account_ids=[account.pk]) == []


def test_sigkill_of_a_leader_hands_its_topic_over_and_trades_fill_once(system, live_db):
    topic = all_topics()[2]
    customer, token = customer_on_topic(topic)
    before = system.leaders()[topic]
    victim = system.executors[before.holder]

    victim.signal(signal.SIGKILL)
    victim.popen.wait(10)
    placed = [place_over_http(system, token, quantity="1") for _ in range(5)]

    for trade in placed:
        wait_for_status(system, token, trade["id"], "filled", timeout=90)
    after = system.leaders()[topic]
    assert after.holder != before.holder
    assert after.epoch > before.epoch
    for trade in placed:
        assert len(system.exchange_orders(trade["id"])) == 1
        assert Execution.objects.filter(trade_id=trade["id"]).count() == 1
    account = Account.objects.get(customer=customer)
    assert topic_for_customer(customer.pk) == topic
    assert account.reserved_cash == 0
    assert ledger_discrepancies(account_ids=[account.pk]) == []

    # Leave three live candidates for whatever runs next.
    del system.executors[before.holder]
    system.start_executor(f"{before.holder}-replacement")
    system.wait_all_topics_led(by=set(system.executors))
