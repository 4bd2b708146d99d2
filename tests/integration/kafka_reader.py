"""Reading a test topic from its start, as a fresh consumer (no group offsets)."""

from __future__ import annotations

import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from django.conf import settings

from broker.events import Event
from devstack.wait import wait_until


def read_events(
    topic: str, count: int, *, key: str | None = None, timeout: float = 60
) -> list[Event]:
    """The first ``count`` events on ``topic`` (only those with ``key``, if
    given), in log order; waits at most ``timeout`` seconds for them."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    wanted = None if key is None else key.encode()
    events: list[Event] = []

    def enough() -> bool:
        for message in consumer.consume(500, timeout=0.2):
            if message.error() is None and wanted in (None, message.key()):
                events.append(Event.decode(message.value()))
        return len(events) >= count

    try:
        wait_until(enough, timeout=timeout, interval=0, what=f"{count} events")
    finally:
        consumer.close()
    return events[:count]
