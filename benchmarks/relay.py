"""2. Relay throughput and publication lag.

- Throughput: outbox rows/s published by the real relay process (``manage.py
  relay``) draining a backlog of N rows committed at once, against the raw rate
  of a confluent-kafka producer on the same broker (same key and value sizes,
  acks=all, idempotence on, the relay's linger/compression).
- Lag: rows are committed one per transaction at a fixed rate (NOTIFY after
  commit, as the api does); a consumer reads the topics, and the lag is the
  message's broker append time (the topics are created with
  ``message.timestamp.type=LogAppendTime``) minus the row's commit time
  (``created_at = clock_timestamp()`` in a one-statement transaction). The same
  for a naive reference relay implemented here: poll every 100 ms, produce,
  flush, stamp.

The relay under test runs in a system of its own (topic prefix ``...-relay``), so
its topics never reach the executors of the other sections.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid

from confluent_kafka import (
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.context import Context
from benchmarks.profiling import SpyRecorder
from benchmarks.system import System
from benchmarks.util import cdf_ms, ratio, rnd, summary_ms

NAIVE_INTERVAL = 0.1
RAW_RUNS = 3
BATCH = 500  # the relay's RELAY_BATCH_SIZE default
TOPICS = 4

# The relay's producer settings (relay/runner.py), for the references.
PRODUCER_CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 2,
    "compression.type": "lz4",
}

_INSERT_MANY = """
INSERT INTO broker_outboxevent (topic, key, event_type, payload, created_at)
SELECT %(prefix)s || '.' || (g %% %(topics)s), (100000 + g)::text, 'trade.placed',
       jsonb_build_object('trade_id', gen_random_uuid()::text,
                          'customer_id', 100000 + g),
       clock_timestamp()
  FROM generate_series(1, %(rows)s) AS g
"""
_INSERT_ONE = """
INSERT INTO broker_outboxevent (topic, key, event_type, payload, created_at)
VALUES (%s, %s, 'trade.placed', %s::jsonb, clock_timestamp())
RETURNING id
"""


def _create_topics(ctx: Context, names: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": ctx.run.kafka, "log_level": 3})
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=1,
                replication_factor=1,
                config={"message.timestamp.type": "LogAppendTime"},
            )
            for name in names
        ],
        operation_timeout=30,
    )
    for future in futures.values():
        future.result(timeout=60)


def _sample_event(customer_id: int) -> tuple[bytes, bytes]:
    """Key and value of a trade.placed event, encoded as the relay encodes it."""
    from broker.events import Event, EventType

    event = Event(
        event_id=10_000_000,
        event_type=EventType.TRADE_PLACED,
        payload={"trade_id": str(uuid.uuid4()), "customer_id": customer_id},
    )
    return str(customer_id).encode(), event.encode()


def raw_producer_rate(
    ctx: Context, topics: list[str], messages: int, *, flush_every: int | None = None
) -> float:
    """Messages/s of a bare confluent-kafka producer; ``flush_every`` waits for
    delivery every so many messages (the relay's batch-then-flush pattern)."""
    producer = Producer({"bootstrap.servers": ctx.run.kafka, **PRODUCER_CONFIG})
    key, value = _sample_event(123456)
    delivered = 0
    errors = 0

    def on_delivery(err, msg) -> None:
        nonlocal delivered, errors
        if err is None:
            delivered += 1
        else:
            errors += 1

    # Warm the connection and the idempotent producer id first.
    producer.produce(topics[0], key=key, value=value)
    producer.flush(30)
    started = time.perf_counter()
    for i in range(messages):
        while True:
            try:
                producer.produce(
                    topics[i % len(topics)],
                    key=key,
                    value=value,
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
        if flush_every and (i + 1) % flush_every == 0:
            producer.flush(30)
    producer.flush(60)
    elapsed = time.perf_counter() - started
    if errors or delivered != messages:
        raise RuntimeError(f"raw producer: {delivered} delivered, {errors} errors")
    return messages / elapsed


class NaiveRelay(threading.Thread):
    """The naive reference: SELECT unpublished, produce, flush, UPDATE, sleep
    100 ms. Same producer settings as the real relay."""

    def __init__(self, ctx: Context, topics: list[str]) -> None:
        super().__init__(name="naive-relay", daemon=True)
        self.ctx = ctx
        self.topics = topics
        self.stop_flag = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = Producer(
                {"bootstrap.servers": self.ctx.run.kafka, **PRODUCER_CONFIG}
            )
            from broker.events import Event

            with self.ctx.run.connect() as conn:
                while not self.stop_flag.is_set():
                    rows = conn.execute(
                        "SELECT id, topic, key, event_type, payload "
                        "FROM broker_outboxevent WHERE published_at IS NULL "
                        "AND topic = ANY(%s) ORDER BY id LIMIT %s",
                        [self.topics, BATCH],
                    ).fetchall()
                    for outbox_id, topic, key, event_type, payload in rows:
                        producer.produce(
                            topic,
                            key=key.encode(),
                            value=Event(outbox_id, event_type, payload).encode(),
                        )
                        producer.poll(0)
                    if rows:
                        producer.flush(30)
                        conn.execute(
                            "UPDATE broker_outboxevent SET published_at = now() "
                            "WHERE id = ANY(%s)",
                            [[r[0] for r in rows]],
                        )
                    self.stop_flag.wait(NAIVE_INTERVAL)
            producer.flush(10)
        except BaseException as exc:  # reported by the caller
            self.error = exc


class _Collector(threading.Thread):
    """Consumes ``topics`` from their current end; records event id → broker
    timestamp (ms) and its type."""

    def __init__(self, ctx: Context, topics: list[str]) -> None:
        super().__init__(name="lag-consumer", daemon=True)
        self.consumer = Consumer(
            {
                "bootstrap.servers": ctx.run.kafka,
                "group.id": f"bench-{ctx.run.run_id}-lag",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        partitions = []
        for topic in topics:
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=10
            )
            partitions.append(TopicPartition(topic, 0, high))
        self.consumer.assign(partitions)
        self.seen: dict[int, float] = {}
        self.timestamp_types: set[int] = set()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        import json

        try:
            while not self.stop_flag.is_set():
                message = self.consumer.poll(0.1)
                if message is None or message.error() is not None:
                    continue
                ts_type, ts = message.timestamp()
                self.timestamp_types.add(ts_type)
                event_id = json.loads(message.value())["event_id"]
                self.seen.setdefault(event_id, ts / 1000.0)
        finally:
            self.consumer.close()


def _offered_lag(ctx: Context, topics: list[str], label: str) -> dict:
    """Commit one row per transaction at the configured rate onto ``topics`` and
    measure commit → broker append for each."""
    rate = ctx.profile.relay_lag_rate
    seconds = ctx.profile.relay_lag_seconds
    collector = _Collector(ctx, topics)
    collector.start()
    ids: list[int] = []
    notify = label == "relay"  # the naive relay polls; only the real one listens
    try:
        with ctx.run.connect() as conn:
            started = time.perf_counter()
            total = int(rate * seconds)
            for n in range(total):
                due = started + n / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                customer = 200000 + n
                payload = f'{{"trade_id": "{uuid.uuid4()}", "customer_id": {customer}}}'
                ids.append(
                    conn.execute(
                        _INSERT_ONE, [topics[n % len(topics)], str(customer), payload]
                    ).fetchone()[0]
                )
                if notify:
                    conn.execute("NOTIFY outbox")
                if n % 50 == 0:
                    ctx.progress.update(
                        f"{label} lag at {rate:.0f} rows/s: {n}/{total} committed"
                    )
            achieved = total / (time.perf_counter() - started)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(i in collector.seen for i in ids):
            ctx.progress.update(
                f"{label} lag: {len(collector.seen)}/{len(ids)} consumed"
            )
            time.sleep(0.1)
    finally:
        collector.stop_flag.set()
        collector.join(15)
    with ctx.run.connect() as conn:
        rows = conn.execute(
            "SELECT id, extract(epoch FROM created_at), "
            "extract(epoch FROM published_at) FROM broker_outboxevent "
            "WHERE id = ANY(%s)",
            [ids],
        ).fetchall()
    lags, stamp_lags = [], []
    for outbox_id, created, published in rows:
        if outbox_id in collector.seen:
            lags.append(max(0.0, collector.seen[outbox_id] - float(created)))
        if published is not None:
            stamp_lags.append(float(published) - float(created))
    lost = len(ids) - len(lags)
    return {
        "offered_rate": rate,
        "achieved_rate": rnd(achieved, 1),
        "rows": len(ids),
        "not_consumed": lost,
        "timestamp_type": (
            "LogAppendTime"
            if collector.timestamp_types == {TIMESTAMP_LOG_APPEND_TIME}
            else f"types {sorted(collector.timestamp_types)}"
        ),
        **summary_ms(lags),
        "cdf": cdf_ms(lags),
        "stamp_lag": summary_ms(stamp_lags),
    }


def run(ctx: Context) -> dict:
    profile = ctx.profile
    system = System(ctx.run, "relay", topics=TOPICS)
    naive_topics = [f"{system.prefix}-naive.{i}" for i in range(TOPICS)]
    raw_topics = [f"{system.prefix}-raw.{i}" for i in range(TOPICS)]
    ctx.progress.update("creating topics (LogAppendTime)")
    _create_topics(ctx, system.topic_names() + naive_topics + raw_topics)
    out: dict = {"topics": TOPICS, "batch_size": BATCH, "producer": PRODUCER_CONFIG}
    try:
        ctx.progress.update("starting the relay")
        system.start_relay()
        _wait_relay_ready(ctx, system)

        # Throughput: drain a committed backlog.
        rows = profile.relay_rows
        relay = system.relays[0]
        spy = SpyRecorder(
            "relay",
            relay.pid,
            ctx.run.log_dir,
            focus=("_serve",),
            idle_markers=("_wait_for_wake",),
        )
        with ctx.run.connect() as conn, spy:
            conn.execute(
                _INSERT_MANY, {"prefix": system.prefix, "topics": TOPICS, "rows": rows}
            )
            committed = float(
                conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[
                    0
                ]
            )
            conn.execute("NOTIFY outbox")

            def drained() -> bool:
                left = conn.execute(
                    "SELECT count(*) FROM broker_outboxevent "
                    "WHERE published_at IS NULL AND topic = ANY(%s)",
                    [system.topic_names()],
                ).fetchone()[0]
                ctx.progress.update(f"relay draining {rows} rows: {left} left")
                return left == 0

            system.wait(drained, timeout=600, what="the relay to drain", interval=0.05)
            last = float(
                conn.execute(
                    "SELECT extract(epoch FROM max(published_at)) "
                    "FROM broker_outboxevent WHERE topic = ANY(%s)",
                    [system.topic_names()],
                ).fetchone()[0]
            )
        out["profile_relay"] = spy.result
        relay_rate = rows / max(1e-6, last - committed)
        out["relay_rows"] = rows
        out["relay_rows_per_s"] = rnd(relay_rate, 1)

        # The reference takes a fraction of a second, so one run of it is noisy
        # (190k-420k msg/s on this machine): the median of three.
        raws = []
        for attempt in range(RAW_RUNS):
            ctx.progress.update(f"raw producer: {rows} messages ({attempt + 1})")
            raws.append(raw_producer_rate(ctx, raw_topics, rows))
        raw = statistics.median(raws)
        out["raw_producer_msgs_per_s"] = rnd(raw, 1)
        out["raw_producer_runs_msgs_per_s"] = [rnd(r, 1) for r in raws]
        out["relay_vs_raw_producer_ratio"] = ratio(relay_rate, raw)
        ctx.progress.update(f"raw producer, flush every {BATCH}: {rows} messages")
        raw_batched = raw_producer_rate(ctx, raw_topics, rows, flush_every=BATCH)
        out["raw_producer_flush_per_batch_msgs_per_s"] = rnd(raw_batched, 1)
        key, value = _sample_event(123456)
        out["message_bytes"] = {"key": len(key), "value": len(value)}
        ctx.progress.log(
            f"relay: {out['relay_rows_per_s']} rows/s vs raw producer "
            f"{out['raw_producer_msgs_per_s']} msg/s "
            f"(flush per {BATCH}: {out['raw_producer_flush_per_batch_msgs_per_s']})"
        )

        # Lag at a fixed offered load: the relay, then the naive reference.
        lag = _offered_lag(ctx, system.topic_names(), "relay")
        out["lag"] = lag
        naive = NaiveRelay(ctx, naive_topics)
        naive.start()
        try:
            naive_lag = _offered_lag(ctx, naive_topics, "naive 100ms relay")
        finally:
            naive.stop_flag.set()
            naive.join(30)
        if naive.error is not None:
            raise RuntimeError(f"naive relay failed: {naive.error!r}")
        out["naive_lag"] = naive_lag
        out["relay_lag_p50_ms"] = lag["p50_ms"]
        out["relay_lag_p99_ms"] = lag["p99_ms"]
        out["naive_relay_lag_p50_ms"] = naive_lag["p50_ms"]
        out["naive_relay_lag_p99_ms"] = naive_lag["p99_ms"]
        out["relay_vs_naive_lag_p99_ratio"] = ratio(lag["p99_ms"], naive_lag["p99_ms"])
        out["relay_vs_naive_lag_p50_ratio"] = ratio(lag["p50_ms"], naive_lag["p50_ms"])
        out["raw_producer_flush_per_batch_vs_streaming_ratio"] = ratio(
            out["raw_producer_flush_per_batch_msgs_per_s"],
            out["raw_producer_msgs_per_s"],
        )
        ctx.progress.log(
            f"relay: lag p50 {lag['p50_ms']} ms p99 {lag['p99_ms']} ms; naive "
            f"p50 {naive_lag['p50_ms']} ms p99 {naive_lag['p99_ms']} ms"
        )
    finally:
        system.stop()
    return out


def _wait_relay_ready(ctx: Context, system: System) -> None:
    """The relay has taken its shards once a probe row gets published."""
    with ctx.run.connect() as conn:
        probe = conn.execute(
            _INSERT_ONE,
            [system.topic_names()[0], "1", '{"trade_id": "probe", "customer_id": 1}'],
        ).fetchone()[0]
        conn.execute("NOTIFY outbox")

        def published() -> bool:
            return conn.execute(
                "SELECT published_at IS NOT NULL FROM broker_outboxevent WHERE id = %s",
                [probe],
            ).fetchone()[0]

        system.wait(published, timeout=90, what="the relay to publish a probe")
