"""The relay's run loop: publish unpublished outbox rows in id order with an
idempotent producer, and stamp them published only after Kafka confirmed delivery.

The outbox is sharded by topic (a customer's events all go to one topic, so order
only matters within a shard). At most one relay works a shard: it holds the
shard's session-level advisory lock on its own connection and reads through that
connection; the stamps go through a second one (relay.stamper). Relays
share the shards: each takes at most ceil(shards / live relays), counting live
relays in pg_stat_activity, and gives a shard back only after a drain, when
everything it sent was acknowledged and stamped. Under a backlog several batches
are in flight at once (relay.pipeline): the next is read past the highest
id produced while Kafka acknowledges the earlier ones. Published at least once: a
crash between delivery and stamp republishes, and the executor is idempotent; the
first copy of each event still lands in order.
"""

from __future__ import annotations

import logging
import math
import threading
import time

import psycopg
from confluent_kafka import Producer

from broker.events import Event, encode_envelope
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
from relay.db import array_literal, raw_connect
from relay.pipeline import Pipeline, Settled
from relay.stamper import Stamper

logger = logging.getLogger(__name__)

# First key of the two-key advisory locks on shards; the second is hashtext(topic).
RELAY_LOCK_CLASS = 0x6F7574  # "out"
APPLICATION_NAME = "broker-relay"
REBALANCE_SECONDS = 2.0
# Batches produced and not yet answered by Kafka, at most.
PIPELINE_DEPTH = 4
# How long to wait for Kafka's answer to a batch before reading it again.
DELIVERY_TIMEOUT_SECONDS = 30.0

# The payload comes out as JSON text and goes into the envelope as it is
# (broker.events.encode_envelope): no JSON parse and dump per row in this process,
# and cheaper for PostgreSQL than building the envelope itself.
_SELECT_BATCH = """
SELECT id, topic, key, event_type, payload::text
  FROM broker_outboxevent
 WHERE published_at IS NULL AND topic = ANY(%s::text[]) AND id > %s
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
            # The batch read has one right plan: walk the unpublished-tail index in
            # id order and stop at the LIMIT. In a burst the outbox's statistics
            # are stale (it changes faster than autoanalyze runs) and the planner
            # picked a seq or bitmap scan plus sort: the whole table read per
            # batch, 30-60 ms instead of 1 ms for 500 rows of 50,000.
            for plan in ("seqscan", "bitmapscan", "sort"):
                conn.execute(f"SET enable_{plan} = off")
            stamper = Stamper(depth=PIPELINE_DEPTH)
            try:
                self._serve_shards(conn, Pipeline(producer, PIPELINE_DEPTH), stamper)
            finally:
                stamper.close()

    def _serve_shards(
        self, conn: psycopg.Connection, pipeline: Pipeline, stamper: Stamper
    ) -> None:
        shards: list[str] = []
        shards_param = array_literal(shards)
        next_rebalance = 0.0
        while not self._stop.is_set():
            self._alive_at = time.monotonic()
            if time.monotonic() >= next_rebalance:
                # Shards change hands only when nothing sent is unstamped.
                self._drain(pipeline, stamper)
                shards = self._rebalance(conn, shards)
                shards_param = array_literal(shards)  # built once per rebalance
                self._observe_backlog(conn)
                next_rebalance = time.monotonic() + REBALANCE_SECONDS
            if not shards:
                self._wait_for_wake(conn)
                continue
            full = self._publish_batch(conn, pipeline, stamper, shards_param)
            if not full:
                # The backlog is drained: stamp the rest, then sleep.
                self._drain(pipeline, stamper)
                self._wait_for_wake(conn)
        # Stopping: stamp what Kafka has confirmed, so a restart resends less.
        self._drain(pipeline, stamper)

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
        after a drain, when nothing this relay sent is unacknowledged or unstamped."""
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
        self,
        conn: psycopg.Connection,
        pipeline: Pipeline,
        stamper: Stamper,
        shards_param: str,
    ) -> bool:
        """Read the next batch of the shards (``shards_param``: their array
        literal) past the ones in flight, produce it, and stamp the batches Kafka
        has answered meanwhile. True if the batch was full (more may be
        waiting)."""
        if not pipeline.wait_for_room(DELIVERY_TIMEOUT_SECONDS):
            self._drain(pipeline, stamper)
            return False
        rows = conn.execute(
            _SELECT_BATCH, [shards_param, pipeline.cursor, self._batch_size]
        ).fetchall()
        sent = pipeline.send(
            (outbox_id, topic, key, encode_envelope(outbox_id, event_type, payload))
            for outbox_id, topic, key, event_type, payload in rows
        )
        settled = pipeline.take_answered()
        self._stamp(stamper, settled)
        if not settled.clean:
            self._drain(pipeline, stamper)
            return False
        return sent == self._batch_size

    def _drain(self, pipeline: Pipeline, stamper: Stamper) -> None:
        """Everything sent is answered (or given up on) and stamped; the next read
        starts from the oldest unpublished row again."""
        self._stamp(stamper, pipeline.drain(DELIVERY_TIMEOUT_SECONDS))
        stamper.wait()

    def _stamp(self, stamper: Stamper, settled: Settled) -> None:
        if settled.delivered:
            stamper.submit(settled.delivered)
            OUTBOX_PUBLISHED.inc(len(settled.delivered))
        if settled.clean:
            return
        OUTBOX_ERRORS.inc(len(settled.failed) + settled.unanswered)
        for msg in settled.failed:
            logger.error(
                "outbox delivery failed outbox_id=%s error=%s",
                Event.decode(msg.value()).event_id,
                msg.error(),
            )
        if settled.unanswered:
            logger.error(
                "outbox delivery unanswered after %ss: %s messages",
                DELIVERY_TIMEOUT_SECONDS,
                settled.unanswered,
            )
        # Stamped only what Kafka confirmed; the rest is read again next round.
        self._stop.wait(1.0)
