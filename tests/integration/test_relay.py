"""The relay itself on the real PostgreSQL and Kafka: a backlog many batches deep
goes out whole, in commit order per key, and is stamped; a row committed late
with a lower id is not left behind by the read cursor. The relay runs in a
thread of the test on a topic of its own (the system's relay never reads it)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from django.conf import settings

from broker.db import raw_connect
from broker.events import Event
from broker.models import OutboxEvent
from broker.relay.runner import Relay
from broker.services.outbox import NOTIFY_CHANNEL
from broker.stack.apps import wait_until
from tests.stack_cleanup import drop_topics_and_znodes

pytestmark = pytest.mark.integration

BATCH = 50
KEYS = [str(k) for k in range(900_001, 900_007)]
_INSERT = """
INSERT INTO broker_outboxevent (topic, key, event_type, payload, created_at)
VALUES (%s, %s, 'relay.test', %s::jsonb, now()) RETURNING id
"""


@pytest.fixture
def topic(live_db, monkeypatch) -> Iterator[str]:
    name = f"{settings.TRADE_TOPIC_PREFIX}-relay-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("METRICS_PORT", "0")
    relay = Relay(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        topics=[name],
        partitions=1,
        batch_size=BATCH,
        poll_seconds=0.2,
    )
    thread = threading.Thread(target=relay.run, name="relay-under-test")
    thread.start()
    try:
        yield name
    finally:
        relay.stop()
        thread.join(30)
        assert not thread.is_alive()
        OutboxEvent.objects.filter(topic=name).delete()
        drop_topics_and_znodes([name], f"{settings.ZOOKEEPER_ROOT}-relay-unused")


def insert(conn: psycopg.Connection, topic: str, key: str, n: int) -> int:
    return conn.execute(_INSERT, [topic, key, f'{{"n": {n}}}']).fetchone()[0]


def wait_all_stamped(topic: str, count: int) -> None:
    stamped = OutboxEvent.objects.filter(topic=topic, published_at__isnull=False)
    wait_until(
        lambda: stamped.count() == count,
        timeout=60,
        what=f"{count} outbox rows stamped published",
    )


def read_all(topic: str, count: int) -> list[Event]:
    """At least ``count`` events from the start of ``topic``, in log order."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    events: list[Event] = []

    def enough() -> bool:
        for message in consumer.consume(500, timeout=0.2):
            if message.error() is None:
                events.append(Event.decode(message.value()))
        return len(events) >= count

    try:
        wait_until(enough, timeout=60, interval=0, what=f"{count} events on {topic}")
    finally:
        consumer.close()
    return events


def test_a_backlog_many_batches_deep_is_published_in_order_and_stamped(topic):
    rows = BATCH * 24  # deeper than the pipeline: batches wait for room
    expected: dict[str, list[int]] = {key: [] for key in KEYS}
    with raw_connect() as conn:
        with conn.transaction():
            for n in range(rows):
                key = KEYS[n % len(KEYS)]
                expected[key].append(insert(conn, topic, key, n))
        conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")

    wait_all_stamped(topic, rows)

    first_copies: dict[str, list[int]] = {key: [] for key in KEYS}
    seen: set[int] = set()
    for event in read_all(topic, rows):
        if event.event_id not in seen:
            seen.add(event.event_id)
            key = KEYS[event.payload["n"] % len(KEYS)]
            first_copies[key].append(event.event_id)
    assert first_copies == expected


def test_a_row_committed_late_with_a_lower_id_is_still_published(topic):
    with raw_connect(autocommit=False) as late, raw_connect() as conn:
        late_id = insert(late, topic, KEYS[0], 0)  # uncommitted: the relay can't see it
        early_ids = [insert(conn, topic, KEYS[1], n) for n in range(1, BATCH * 3)]
        conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        wait_all_stamped(topic, len(early_ids))
        assert late_id < min(early_ids)

        late.commit()
        conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")

        wait_all_stamped(topic, len(early_ids) + 1)
    published = {event.event_id for event in read_all(topic, len(early_ids) + 1)}
    assert published == {late_id, *early_ids}
