"""Process behaviour on the real stack: graceful SIGTERM, relay standby/takeover, and
per-customer order of events on Kafka."""

from __future__ import annotations

import signal
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from django.conf import settings
from django.db import connection

from broker.models import DeadLetter, OutboxEvent
from broker.topics import all_topics, dead_letter_topic
from devstack.wait import wait_until
from relay.runner import RELAY_LOCK_CLASS
from tests.integration.conftest import (
    customer_on_topic,
    place_over_http,
    wait_for_status,
)
from tests.integration.kafka_reader import read_events

pytestmark = pytest.mark.integration


def test_a_customers_events_reach_kafka_in_commit_order(system, live_db):
    customer, token = customer_on_topic(all_topics()[3])
    placed = [place_over_http(system, token, quantity="1") for _ in range(8)]

    events = read_events(all_topics()[3], len(placed), key=str(customer.pk))

    assert [e.payload["trade_id"] for e in events] == [t["id"] for t in placed]
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)
    stamped = OutboxEvent.objects.filter(key=str(customer.pk))
    wait_until(
        lambda: not stamped.filter(published_at__isnull=True).exists(),
        timeout=30,
        what="outbox rows stamped published",
    )


def relay_shards() -> dict[int, int]:
    """pid → number of outbox shards that relay process holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT pid, count(*) FROM pg_locks
             WHERE locktype = 'advisory' AND classid = %s AND granted
               AND database = (SELECT oid FROM pg_database
                                WHERE datname = current_database())
             GROUP BY pid
            """,
            [RELAY_LOCK_CLASS],
        )
        return dict(cursor.fetchall())


def test_relays_share_the_shards_and_take_over_a_dead_ones(system, live_db):
    relay = next(p for p in system.launcher.processes if p.name == "relay")
    second = system.launcher.start_relay(name="relay-2")
    topics = len(all_topics())
    wait_until(
        lambda: sorted(relay_shards().values()) == [topics // 2, topics - topics // 2],
        timeout=30,
        what="two relays holding half the shards each",
    )

    # A burst for one customer while both relays publish: order is kept.
    customer, token = customer_on_topic(all_topics()[0])
    placed = [place_over_http(system, token, quantity="1") for _ in range(10)]
    events = read_events(all_topics()[0], len(placed), key=str(customer.pk))
    assert [e.payload["trade_id"] for e in events] == [t["id"] for t in placed]

    relay.signal(signal.SIGKILL)
    relay.popen.wait(10)
    system.launcher.processes.remove(relay)
    # The killed relay's connection closes and its locks go with it.
    wait_until(
        lambda: list(relay_shards().values()) == [topics],
        timeout=30,
        what="the surviving relay holding every shard",
    )
    for topic in all_topics():
        _, token = customer_on_topic(topic)
        trade = place_over_http(system, token, quantity="1")
        wait_for_status(system, token, trade["id"], "filled", timeout=60)
    assert second.alive()


def test_sigterm_makes_an_executor_leave_its_elections_and_exit_0(system, live_db):
    leaders = system.leaders()
    name = leaders[all_topics()[0]].holder
    process = system.executors.pop(name)
    led_before = {t for t, leader in leaders.items() if leader.holder == name}

    process.signal(signal.SIGTERM)
    assert process.popen.wait(30) == 0
    # It left the elections itself, so successors take over without waiting for
    # a ZooKeeper session timeout; trades on its old topics still fill.
    system.wait_all_topics_led(by=set(system.executors), timeout=30)
    for topic in led_before:
        _, token = customer_on_topic(topic)
        trade = place_over_http(system, token, quantity="1")
        wait_for_status(system, token, trade["id"], "filled", timeout=60)
    system.start_executor(f"{name}-restarted")
    system.wait_all_topics_led(by=set(system.executors))


def test_sigterm_stops_the_relay_with_exit_0(system, live_db):
    relay = system.launcher.start_relay(name="relay-to-stop")
    wait_until(
        lambda: "relay started" in relay.log_tail(), timeout=30, what="relay start"
    )
    relay.signal(signal.SIGTERM)
    assert relay.popen.wait(30) == 0
    system.launcher.processes.remove(relay)


def test_a_poison_message_is_dead_lettered_and_its_topic_keeps_flowing(system, live_db):
    topic = all_topics()[1]
    delivered: list = []
    producer = Producer({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS})
    producer.produce(
        topic,
        key=b"poison",
        value=b"\x00 not an event",
        on_delivery=lambda err, msg: delivered.append(msg),
    )
    assert producer.flush(30) == 0
    offset = delivered[0].offset()

    _, token = customer_on_topic(topic)
    trade = place_over_http(system, token, quantity="1")
    wait_for_status(system, token, trade["id"], "filled")

    letter = DeadLetter.objects.get(topic=topic, offset=offset)
    assert "undecodable" in letter.reason
    [copied] = read_raw(dead_letter_topic(), key=f"{topic}:0:{offset}".encode())
    assert copied.value() == b"\x00 not an event"
    assert dict(copied.headers())["reason"].decode() == letter.reason


def read_raw(topic: str, *, key: bytes, timeout: float = 30) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    found: list = []

    def seen() -> bool:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None and message.key() == key:
            found.append(message)
        return bool(found)

    try:
        wait_until(seen, timeout=timeout, interval=0, what=f"{key!r} on {topic}")
    finally:
        consumer.close()
    return found
