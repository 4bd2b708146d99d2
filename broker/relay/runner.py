"""The relay's run loop: publish unpublished outbox rows in id order with an
idempotent producer, and stamp them published only after Kafka confirmed delivery.

The outbox is sharded by topic (a customer's events all go to one topic, so order
only matters within a shard). At most one relay works a shard: it holds the shard's
session-level advisory lock on its own connection and reads, publishes and stamps
through that connection. Relays share the shards: each takes at most
ceil(shards / live relays), counting live relays in pg_stat_activity, and gives a
shard back only between batches, after everything it sent was acknowledged and
stamped. Published at least once: a crash between delivery and stamp republishes,
and the executor is idempotent; the first copy of each event still lands in order.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import psycopg
from confluent_kafka import KafkaError, Message, Producer

from broker.db import raw_connect
from broker.events import Event
from broker.kafka_admin import ensure_topics
from broker.observability.metrics import (
    OUTBOX_ERRORS,
    OUTBOX_LAG,
    OUTBOX_PUBLISHED,
    OUTBOX_UNPUBLISHED,
    RELAY_SHARDS,
)
from broker.observability.server import serve_worker_endpoints
from broker.services.outbox import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

# First key of the two-key advisory locks on shards; the second is hashtext(topic).
RELAY_LOCK_CLASS = 0x6F7574  # "out"
APPLICATION_NAME = "broker-relay"
REBALANCE_SECONDS = 2.0

# The Kafka key and value come out of PostgreSQL ready to send: the envelope of
# broker.events.Event built by json_build_object, as bytes (no JSON parse and dump
# per row in this process).
_SELECT_BATCH = """
SELECT id, topic, convert_to(key, 'UTF8'),
       convert_to(json_build_object('event_id', id, 'event_type', event_type,
                                    'payload', payload)::text, 'UTF8')
  FROM broker_outboxevent
 WHERE published_at IS NULL AND topic = ANY(%s)
 ORDER BY id
 LIMIT %s
"""
_BACKLOG = """
SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)
  FROM broker_outboxevent
 WHERE published_at IS NULL
"""
# Ready while the loop made progress this recently (a relay stuck on a dead
# connection stops being ready).
READY_WITHIN_SECONDS = 15.0
_LIVE_RELAYS = """
SELECT count(*) FROM pg_stat_activity
 WHERE application_name = %s AND datname = current_database()
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
        self._alive_at = 0.0
        self._producer: Producer | None = None

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
        self._producer = producer
        serve_worker_endpoints(self._ready)
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
        with raw_connect(application_name=APPLICATION_NAME) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            shards: list[str] = []
            next_rebalance = 0.0
            while not self._stop.is_set():
                self._alive_at = time.monotonic()
                if time.monotonic() >= next_rebalance:
                    shards = self._rebalance(conn, shards)
                    self._observe_backlog(conn)
                    next_rebalance = time.monotonic() + REBALANCE_SECONDS
                if not shards:
                    self._wait_for_wake(conn)
                    continue
                published = self._publish_batch(conn, producer, shards)
                if published < self._batch_size:
                    self._wait_for_wake(conn)

    def _ready(self) -> bool:
        """Readiness: the loop is making progress (so PostgreSQL answers) and Kafka
        answers a metadata request."""
        if time.monotonic() - self._alive_at > READY_WITHIN_SECONDS:
            return False
        self._producer.list_topics(timeout=2)
        return True

    def _observe_backlog(self, conn: psycopg.Connection) -> None:
        unpublished, oldest_age = conn.execute(_BACKLOG).fetchone()
        OUTBOX_UNPUBLISHED.set(unpublished)
        OUTBOX_LAG.set(float(oldest_age))

    def _rebalance(self, conn: psycopg.Connection, held: list[str]) -> list[str]:
        """Take free shards up to our share; give back what is over it. Called only
        between batches, when nothing this relay sent is unacknowledged."""
        live = conn.execute(_LIVE_RELAYS, [APPLICATION_NAME]).fetchone()[0]
        share = math.ceil(len(self._topics) / max(1, live))
        held = list(held)
        while len(held) > share:
            topic = held.pop()
            conn.execute(
                "SELECT pg_advisory_unlock(%s, hashtext(%s))", [RELAY_LOCK_CLASS, topic]
            )
            logger.info(
                "relay released shard=%s share=%s relays=%s", topic, share, live
            )
        for topic in self._topics:
            if len(held) >= share:
                break
            if topic in held:
                continue
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                [RELAY_LOCK_CLASS, topic],
            ).fetchone()[0]
            if got:
                held.append(topic)
                logger.info(
                    "relay took shard=%s share=%s relays=%s", topic, share, live
                )
        RELAY_SHARDS.set(len(held))
        return held

    def _wait_for_wake(self, conn: psycopg.Connection) -> None:
        """Block until a NOTIFY arrives or the polling interval passes; then drain
        whatever else queued up so one burst of commits costs one wake-up."""
        for _ in conn.notifies(timeout=self._poll_seconds, stop_after=1):
            pass
        for _ in conn.notifies(timeout=0):
            pass

    def _publish_batch(
        self, conn: psycopg.Connection, producer: Producer, shards: list[str]
    ) -> int:
        rows = conn.execute(_SELECT_BATCH, [shards, self._batch_size]).fetchall()
        if not rows:
            return 0
        delivered: list[Message] = []
        failed: list[Message] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            (failed if err is not None else delivered).append(msg)

        started = time.monotonic()
        for _, topic, key, value in rows:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            producer.poll(0)
        undelivered = producer.flush(30)
        if len(delivered) == len(rows):
            stamped = [row[0] for row in rows]
        else:
            # Only what Kafka confirmed: identify it (rare path) by its envelope.
            stamped = [Event.decode(msg.value()).event_id for msg in delivered]
        if stamped:
            conn.execute(_STAMP, [stamped])
            OUTBOX_PUBLISHED.inc(len(stamped))
        if failed or undelivered:
            OUTBOX_ERRORS.inc(len(failed) + undelivered)
        for msg in failed:
            logger.error(
                "outbox delivery failed outbox_id=%s error=%s",
                Event.decode(msg.value()).event_id,
                msg.error(),
            )
        if undelivered or failed:
            # Stamped only what Kafka confirmed; the rest is retried next round.
            self._stop.wait(1.0)
        logger.debug(
            "outbox batch published=%s failed=%s ms=%.1f",
            len(stamped),
            len(failed) + undelivered,
            (time.monotonic() - started) * 1000,
        )
        return len(rows)
