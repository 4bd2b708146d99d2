"""Dead letters: where a message goes when it can never be processed, so it stops
blocking the work behind it and operations can see it — the dead-letter topic for
Kafka messages, and the ``DeadLetter`` table for every kind (recorded here, once)."""

from __future__ import annotations

import logging
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer

from broker.models import DeadLetter

logger = logging.getLogger(__name__)


def dead_letter_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    payload: str | bytes | None,
    epoch: int,
) -> None:
    """Record a dead letter at its source position (unique: a replay records
    nothing new). Must run in the fenced transaction that moves past it. The text
    is kept printable for PostgreSQL (a NUL would fail the insert) and bounded."""
    DeadLetter.objects.get_or_create(
        topic=topic[:128],
        partition=partition,
        offset=offset,
        defaults={
            "reason": _printable(reason)[:500],
            "payload": _printable((payload or "")[:10000]),
            "epoch": epoch,
        },
    )


def _printable(value: str | bytes) -> str:
    """Text PostgreSQL accepts (no NUL) that still shows every byte."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="backslashreplace")
    return value.replace("\x00", "\\x00")


class DeadLetterSink(Protocol):
    def send(
        self, *, topic: str, partition: int, offset: int, raw: bytes | None, reason: str
    ) -> None: ...


class KafkaDeadLetterSink:
    """Produces to ``<prefix>.dlq`` (key: the source position) and waits for the
    broker's acknowledgement: the source offset may only move once the message is
    safely elsewhere."""

    def __init__(self, *, bootstrap_servers: str, topic: str) -> None:
        self.topic = topic
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
            }
        )

    def send(
        self, *, topic: str, partition: int, offset: int, raw: bytes | None, reason: str
    ) -> None:
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        self._producer.produce(
            self.topic,
            key=f"{topic}:{partition}:{offset}".encode(),
            value=raw or b"",
            headers={
                "source_topic": topic,
                "source_partition": str(partition),
                "source_offset": str(offset),
                "reason": reason[:500],
            },
            on_delivery=on_delivery,
        )
        if self._producer.flush(30) or errors:
            raise RuntimeError(f"dead-letter publish failed: {errors or 'timeout'}")
        logger.error(
            "message dead-lettered topic=%s partition=%s offset=%s reason=%s",
            topic,
            partition,
            offset,
            reason,
        )
