"""The dead-letter topic: where a message goes when it can never be processed, so
it stops blocking its topic and operations can see it."""

from __future__ import annotations

import logging
from typing import Protocol

from confluent_kafka import KafkaError, Message, Producer

logger = logging.getLogger(__name__)


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
