"""Diagnostics (not a target): what one unit of work costs at each stage, measured
in-process and single-threaded (no contention), so the throughput figures can be
explained.

- PlaceTrade: POST /api/v1/trades through Django's full stack (middleware, DRF,
  auth, throttle, the quote, the service) with Django's test client.
- Executor message: ``executor.handlers.handle_message`` for a trade.placed event,
  with a real fence (a topic claimed for this probe) and exchange session.
- Feed report: ``executor.feed.apply_reports`` for the execution reports those
  orders produced (every fill on arrival is also in the feed).

For each: SQL statements, transactions (COMMITs), Redis round trips and exchange HTTP
requests per unit, wall and CPU milliseconds per unit (CPU of this process only:
PostgreSQL's is not in it).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter

from benchmarks.context import Context
from benchmarks.util import ratio, rnd, summary_ms

SAMPLES = 30


class _Calls:
    """Counts Redis round trips (a pipeline is one) and exchange HTTP requests
    while active."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    @contextlib.contextmanager
    def patched(self):
        import redis
        import urllib3

        original_redis = redis.Redis.execute_command
        original_pipeline = redis.client.Pipeline.execute
        original_urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen
        calls = self.counts

        def execute_command(client, *args, **kwargs):
            calls["redis"] += 1
            return original_redis(client, *args, **kwargs)

        def execute_pipeline(pipeline, *args, **kwargs):
            calls["redis"] += 1  # one round trip, however many commands
            return original_pipeline(pipeline, *args, **kwargs)

        def urlopen(pool, *args, **kwargs):
            calls["http"] += 1
            return original_urlopen(pool, *args, **kwargs)

        redis.Redis.execute_command = execute_command
        redis.client.Pipeline.execute = execute_pipeline
        urllib3.connectionpool.HTTPConnectionPool.urlopen = urlopen
        try:
            yield
        finally:
            redis.Redis.execute_command = original_redis
            redis.client.Pipeline.execute = original_pipeline
            urllib3.connectionpool.HTTPConnectionPool.urlopen = original_urlopen


def _measure(label: str, units: int, timed, counted) -> dict:
    """``timed()`` runs ``units`` units plainly (wall and CPU time); ``counted()``
    runs ``units`` others with SQL capture and call counting (which slow them)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    wall0, cpu0 = time.perf_counter(), time.process_time()
    timed()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    calls = _Calls()
    with calls.patched(), CaptureQueriesContext(connection) as queries:
        counted()
    statements = [q["sql"].strip().upper() for q in queries.captured_queries]
    commits = sum(1 for s in statements if s == "COMMIT")
    sql = sum(1 for s in statements if s not in ("BEGIN", "COMMIT", "ROLLBACK"))
    return {
        "stage": label,
        "units": units,
        "sql_per_unit": rnd(sql / units, 2),
        "commits_per_unit": rnd(commits / units, 2),
        "redis_per_unit": rnd(calls.counts["redis"] / units, 2),
        "http_per_unit": rnd(calls.counts["http"] / units, 2),
        "wall_ms_per_unit": rnd(wall / units * 1000, 2),
        "cpu_ms_per_unit": rnd(cpu / units * 1000, 2),
    }


def run(ctx: Context) -> dict:
    from django.conf import settings
    from django.test import Client
    from django.utils import timezone

    from broker.events import Event
    from broker.exchange_client import ExchangeClient
    from broker.models import OutboxEvent, Trade
    from executor.feed import apply_reports
    from executor.fencing import Fence, topic_leader_claim
    from executor.handlers import MessagePosition, handle_message

    run = ctx.run
    run.ensure_exchange()
    # The driver's own settings: this exchange, a topic prefix of its own.
    settings.EXCHANGE_URL = run.exchange_url
    settings.TRADE_TOPIC_PREFIX = f"{run.topic_base}-diag"
    settings.TRADE_TOPICS = 1
    settings.THROTTLE_CUSTOMER_RATE = settings.THROTTLE_IP_RATE = "100000000/minute"
    customers = run.customers[: 2 * SAMPLES]
    # One client (one handler, middleware loaded once), a token per request.
    http = Client(HTTP_HOST="127.0.0.1")
    clients = [f"Bearer {c.token}" for c in customers]
    body = {"symbol": "AAPL", "side": "buy", "quantity": "1", "type": "market"}

    def place(authorization: str) -> str:
        response = http.post(
            "/api/v1/trades",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=authorization,
        )
        if response.status_code != 201:
            raise RuntimeError(f"PlaceTrade {response.status_code}: {response.content}")
        return response.json()["id"]

    place(clients[-1])  # warm: imports, connections, serializers
    timed_ids: list[str] = []
    counted_ids: list[str] = []
    stages = [
        _measure(
            "PlaceTrade (HTTP stack in-process)",
            SAMPLES,
            lambda: timed_ids.extend(place(c) for c in clients[:SAMPLES]),
            lambda: counted_ids.extend(place(c) for c in clients[SAMPLES:]),
        )
    ]

    topic = f"{settings.TRADE_TOPIC_PREFIX}.0"
    topic_leader_claim(topic=topic, epoch=1, holder="diagnostics")
    fence = Fence(topic=topic, epoch=1, still_leader=lambda: True)
    exchange = ExchangeClient(run.exchange_url, timeout=5, session_id=topic, epoch=1)
    exchange.logon()

    class _NoDeadLetters:
        def send(self, **kwargs) -> None:
            raise RuntimeError(f"unexpected dead letter: {kwargs.get('reason')}")

    offsets = iter(range(10**6))

    def handle_all(ids: list[str]) -> None:
        events = OutboxEvent.objects.filter(payload__trade_id__in=ids).order_by("id")
        for event in list(events):
            raw = Event(event.pk, event.event_type, event.payload).encode()
            handle_message(
                raw,
                position=MessagePosition(topic, 0, next(offsets)),
                fence=fence,
                exchange=exchange,
                dead_letters=_NoDeadLetters(),
            )

    stages.append(
        _measure(
            "executor: one trade.placed message",
            SAMPLES,
            lambda: handle_all(timed_ids),
            lambda: handle_all(counted_ids),
        )
    )
    # Every fill is also in the session's feed, which the leader applies again
    # (a replay: nothing changes). At low load each long-poll returns one report.
    reports = exchange.reports(after=0, limit=1000)
    half = len(reports) // 2

    def apply_one_by_one(batch) -> None:
        for report in batch:
            apply_reports([report], fence=fence, session=topic)

    stages.append(
        _measure(
            "executor feed: one execution report (replay of a fill)",
            max(1, half),
            lambda: apply_one_by_one(reports[:half]),
            lambda: apply_one_by_one(reports[half : 2 * half]),
        )
    )
    trade_ids = timed_ids + counted_ids
    exchange.close()
    statuses = Counter(
        Trade.objects.filter(id__in=trade_ids).values_list("status", flat=True)
    )
    # Nothing serves the probe's topic: stamp its outbox rows.
    OutboxEvent.objects.filter(topic=topic, published_at__isnull=True).update(
        published_at=timezone.now()
    )
    for stage in stages:
        ctx.progress.log(
            f"diagnostics: {stage['stage']}: {stage['sql_per_unit']} SQL, "
            f"{stage['commits_per_unit']} commits, {stage['redis_per_unit']} Redis, "
            f"{stage['http_per_unit']} HTTP, {stage['wall_ms_per_unit']} ms wall, "
            f"{stage['cpu_ms_per_unit']} ms CPU"
        )
    exchange_rtt = _exchange_rtt(run.exchange_url)
    postgres = _postgres_rtt(ctx)
    return {
        "exchange_rtt": exchange_rtt,
        **postgres,
        "exchange_rtt_p50_ms": exchange_rtt["p50_ms"],
        # Why one exchange request costs what it does, against the database's
        # round trip on the same loopback.
        "exchange_vs_postgres_rtt_ratio": ratio(
            exchange_rtt["p50_ms"], postgres["postgres_rtt_p50_ms"]
        ),
        "stages": stages,
        "trade_statuses": dict(statuses),
        "reports_per_trade": rnd(len(reports) / max(1, len(trade_ids)), 2),
    }


def _exchange_rtt(url: str, samples: int = 50) -> dict:
    """Round trip of the cheapest exchange request on a keep-alive session: what
    every quote (api) and every order (executor) pays at least."""
    import requests

    session = requests.Session()
    try:
        session.get(f"{url}/healthz", timeout=5)
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            session.get(f"{url}/healthz", timeout=5)
            times.append(time.perf_counter() - started)
    finally:
        session.close()
    return summary_ms(times)


def _postgres_rtt(ctx: Context, samples: int = 200) -> dict:
    with ctx.run.connect() as conn:
        conn.execute("CREATE TABLE bench_commit_probe (x int)")
        try:
            rtt, commit = [], []
            for i in range(samples):
                started = time.perf_counter()
                conn.execute("SELECT 1")
                rtt.append(time.perf_counter() - started)
                started = time.perf_counter()
                conn.execute("INSERT INTO bench_commit_probe VALUES (%s)", [i])
                commit.append(time.perf_counter() - started)
        finally:
            conn.execute("DROP TABLE bench_commit_probe")
    return {
        "postgres_rtt_p50_ms": summary_ms(rtt)["p50_ms"],
        "postgres_commit_p50_ms": summary_ms(commit)["p50_ms"],
    }
