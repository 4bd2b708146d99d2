"""The relay's run loop: publish unpublished outbox rows in id order with an
idempotent producer, and stamp them published only after Kafka confirmed delivery.

Exactly one relay is active at a time: it holds a session-level advisory lock on its
own connection, and reads, publishes and stamps through that same connection, so a
relay that lost the lock (its connection died) can stamp nothing. Other relay
processes wait as standbys. Published at least once: a crash between delivery and
stamp republishes, and the executor is idempotent.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from broker.db import raw_connect
from broker.events import Event
from broker.kafka_admin import ensure_topics
from broker.services.outbox import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

RELAY_LOCK_KEY = 0x6F7574626F78  # "outbox"

_SELECT_BATCH = """
SELECT id, topic, key, event_type, payload
  FROM broker_outboxevent
 WHERE published_at IS NULL
 ORDER BY id
 LIMIT %s
"""
_STAMP = "UPDATE broker_outboxevent SET published_at = now() WHERE id = ANY(%s)"


class Relay:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topics: list[str],
        partitions: int,
        batch_size: int,
        poll_seconds: float,
    ) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._topics = topics
        self._partitions = partitions
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()

    def stop(self) -> None:
        """Called from a signal handler: only sets the flag."""
        self._stop.set()

    def run(self) -> None:
        ensure_topics(
            self._bootstrap_servers, self._topics, partitions=self._partitions
        )
        producer = Producer(
            {
                "bootstrap.servers": self._bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
            }
        )
        logger.info("relay started topics=%s", ",".join(self._topics))
        try:
            while not self._stop.is_set():
                try:
                    self._serve(producer)
                except psycopg.OperationalError:
                    logger.warning("relay lost PostgreSQL; reconnecting", exc_info=True)
                    self._stop.wait(1.0)
        finally:
            remaining = producer.flush(10)
            logger.info("relay stopped undelivered=%s", remaining)

    def _serve(self, producer: Producer) -> None:
        with raw_connect() as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            if not self._acquire_lock(conn):
                return
            logger.info("relay active (holds the outbox lock)")
            while not self._stop.is_set():
                published = self._publish_batch(conn, producer)
                if published < self._batch_size:
                    self._wait_for_wake(conn)

    def _acquire_lock(self, conn: psycopg.Connection) -> bool:
        while not self._stop.is_set():
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s)", [RELAY_LOCK_KEY]
            ).fetchone()
            if row and row[0]:
                return True
            self._wait_for_wake(conn)
        return False

    def _wait_for_wake(self, conn: psycopg.Connection) -> None:
        """Block until a NOTIFY arrives or the polling interval passes; then drain
        whatever else queued up so one burst of commits costs one wake-up."""
        for _ in conn.notifies(timeout=self._poll_seconds, stop_after=1):
            pass
        for _ in conn.notifies(timeout=0):
            pass

    def _publish_batch(self, conn: psycopg.Connection, producer: Producer) -> int:
        rows = conn.execute(_SELECT_BATCH, [self._batch_size]).fetchall()
        if not rows:
            return 0
        delivered: list[int] = []
        failures: list[tuple[int, KafkaError]] = []

        def on_delivery(outbox_id: int):
            def callback(err: KafkaError | None, msg: Message) -> None:
                if err is None:
                    delivered.append(outbox_id)
                else:
                    failures.append((outbox_id, err))

            return callback

        started = time.monotonic()
        for outbox_id, topic, key, event_type, payload in rows:
            event = Event(event_id=outbox_id, event_type=event_type, payload=payload)
            producer.produce(
                topic,
                key=key.encode(),
                value=event.encode(),
                on_delivery=on_delivery(outbox_id),
            )
            producer.poll(0)
        undelivered = producer.flush(30)
        if delivered:
            conn.execute(_STAMP, [delivered])
        for outbox_id, err in failures:
            logger.error("outbox delivery failed outbox_id=%s error=%s", outbox_id, err)
        if undelivered or failures:
            # Stamped only what Kafka confirmed; the rest is retried next round.
            self._stop.wait(1.0)
        logger.debug(
            "outbox batch published=%s failed=%s ms=%.1f",
            len(delivered),
            len(failures) + undelivered,
            (time.monotonic() - started) * 1000,
        )
        return len(rows)
