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
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)
from django.conf import settings
from prometheus_client import REGISTRY

from broker.kafka_admin import ensure_topics
from broker.models import OutboxEvent
from broker.services.outbox import NOTIFY_CHANNEL
from devstack.wait import wait_until
from relay.db import raw_connect
from relay.runner import Relay
from tests.integration.kafka_reader import read_events
from tests.stack_cleanup import drop_topics_and_znodes

pytestmark = pytest.mark.integration

BATCH = 50
KEYS = [str(k) for k in range(900_001, 900_007)]
_INSERT = """
INSERT INTO broker_outboxevent (topic, key, event_type, payload, created_at)
VALUES (%s, %s, 'relay.test', %s::jsonb, now()) RETURNING id
"""


def set_topic_config(name: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS})
    resource = ConfigResource(
        ResourceType.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in config.items()
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


@pytest.fixture
def topic_name() -> str:
    return f"{settings.TRADE_TOPIC_PREFIX}-relay-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic(topic_name, live_db, monkeypatch) -> Iterator[str]:
    """``topic_name`` (created by the test first, if it wants a config of its
    own), served by a relay running in a thread of the test."""
    monkeypatch.setenv("METRICS_PORT", "0")
    relay = Relay(
        bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
        topics=[topic_name],
        partitions=1,
        batch_size=BATCH,
        poll_seconds=0.2,
    )
    thread = threading.Thread(target=relay.run, name="relay-under-test")
    thread.start()
    try:
        yield topic_name
    finally:
        relay.stop()
        thread.join(30)
        assert not thread.is_alive()
        OutboxEvent.objects.filter(topic=topic_name).delete()
        drop_topics_and_znodes([topic_name], f"{settings.ZOOKEEPER_ROOT}-relay-unused")


def insert(conn: psycopg.Connection, topic: str, key: str, n: int) -> int:
    return conn.execute(_INSERT, [topic, key, f'{{"n": {n}}}']).fetchone()[0]


def wait_all_stamped(topic: str, count: int) -> None:
    stamped = OutboxEvent.objects.filter(topic=topic, published_at__isnull=False)
    wait_until(
        lambda: stamped.count() == count,
        timeout=60,
        what=f"{count} outbox rows stamped published",
    )


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
    for event in read_events(topic, rows):
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
    published = {event.event_id for event in read_events(topic, len(early_ids) + 1)}
    assert published == {late_id, *early_ids}


def publish_errors() -> float:
    return REGISTRY.get_sample_value("broker_outbox_publish_errors_total") or 0.0


@pytest.fixture
def refusing_topic(topic_name) -> str:
    """A topic whose broker limit is below any batch the relay sends: Kafka
    refuses every produce request until the limit is raised."""
    ensure_topics(
        settings.KAFKA_BOOTSTRAP_SERVERS,
        [topic_name],
        partitions=1,
        config={"max.message.bytes": "64"},
    )
    return topic_name


def test_rows_kafka_refuses_are_counted_and_not_stamped_until_it_takes_them(
    refusing_topic, topic
):
    errors_before = publish_errors()
    with raw_connect() as conn:
        ids = [insert(conn, topic, KEYS[n % 2], n) for n in range(BATCH * 2)]
        conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")

    wait_until(
        lambda: publish_errors() >= errors_before + len(ids),
        timeout=60,
        what="broker_outbox_publish_errors_total to count the refused rows",
    )
    rows = OutboxEvent.objects.filter(topic=topic)
    assert not rows.filter(published_at__isnull=False).exists()

    set_topic_config(topic, **{"max.message.bytes": "1048588"})

    wait_all_stamped(topic, len(ids))
    first_copies: list[int] = []
    for event in read_events(topic, len(ids)):
        if event.event_id not in first_copies:
            first_copies.append(event.event_id)
    assert first_copies == ids
