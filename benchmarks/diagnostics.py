"""Diagnostics (not a target): what one unit of work costs at each stage, measured
in-process and single-threaded (no contention), so the throughput figures can be
explained.

- PlaceTrade: POST /api/v1/trades through Django's full stack (middleware, DRF,
  auth, throttle, the quote, the service) with Django's test client.
- Executor message: ``executor.orderflow.handle_messages`` for one trade.placed
  event, with a real fence (a topic claimed for this probe) and a FIX session
  that journals what it would send.
- Execution report: ``executor.reports.ReportBooking`` for an acknowledgement and
  a fill of each of those orders, one report per transaction.
- The same under a backlog: a poll of 64 messages handled in one transaction,
  and their fills (a marketable order's only report) booked in one transaction.

For each: SQL statements, transactions (COMMITs), Redis round trips and exchange HTTP
requests (quotes) per unit, wall and CPU milliseconds per unit (CPU of this process
only: PostgreSQL's is not in it).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter

from benchmarks.context import Context
from benchmarks.util import ratio, rnd, summary_ms

SAMPLES = 30
# A poll's messages (executor.runner.BATCH_MESSAGES) and a batch of reports as a
# backlog gives them: what one order costs when the leader is busy.
BATCH = 64


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
    import threading

    from django.conf import settings
    from django.db import transaction
    from django.test import Client
    from django.utils import timezone

    from broker.events import Event
    from broker.models import OutboxEvent, Trade
    from executor.fencing import Fence, topic_leader_claim
    from executor.fix.codec import Framer, MsgType, Tag, encode
    from executor.fix.session import FixSession, SessionConfig
    from executor.orderflow import MessagePosition, handle_messages
    from executor.reports import ReportBooking

    run = ctx.run
    run.ensure_exchange()
    # The driver's own settings: this exchange, a topic prefix of its own.
    settings.EXCHANGE_URL = settings.EXCHANGE_QUOTES_URL = run.exchange_url
    settings.TRADE_TOPIC_PREFIX = f"{run.topic_base}-diag"
    settings.TRADE_TOPICS = 1
    settings.THROTTLE_CUSTOMER_RATE = settings.THROTTLE_IP_RATE = "100000000/minute"
    customers = run.customers[: max(2 * SAMPLES, 2 * BATCH)]
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
            lambda: counted_ids.extend(
                place(c) for c in clients[SAMPLES : 2 * SAMPLES]
            ),
        )
    ]

    topic = f"{settings.TRADE_TOPIC_PREFIX}.0"
    topic_leader_claim(topic=topic, epoch=1, holder="diagnostics")
    fence = Fence(topic=topic, epoch=1, still_leader=lambda: True)
    # A session that is not connected: the order flow's cost is the database's
    # (marked submitted, numbered, journaled, offset stored); the wire is cheap.
    session = FixSession(
        config=SessionConfig(
            sender_comp_id="DIAG-0", target_comp_id="EXCHANGE", host="-", port=0
        ),
        topic=topic,
        fence=fence,
        on_app=lambda messages: [],
        stop=threading.Event(),
        lost=threading.Event(),
    )
    session.prepare()

    class _NoDeadLetters:
        def send(self, **kwargs) -> None:
            raise RuntimeError(f"unexpected dead letter: {kwargs.get('reason')}")

    offsets = iter(range(10**6))

    def handle_one_by_one(ids: list[str]) -> None:
        events = OutboxEvent.objects.filter(payload__trade_id__in=ids).order_by("id")
        for event in list(events):
            raw = Event(event.pk, event.event_type, event.payload).encode()
            handle_messages(
                [(raw, MessagePosition(topic, 0, next(offsets)))],
                fence=fence,
                session=session,
                dead_letters=_NoDeadLetters(),
            )

    stages.append(
        _measure(
            "executor: one trade.placed message (journaled, not waited for)",
            SAMPLES,
            lambda: handle_one_by_one(timed_ids),
            lambda: handle_one_by_one(counted_ids),
        )
    )

    # What the venue answers: an acknowledgement and a fill per order, booked
    # one report per transaction (the slowest case: under load several share
    # one), with the trust checks.
    booking = ReportBooking(topic=topic, session="DIAG-0", epoch=1)
    numbers = iter(range(1, 10**6))

    def reports_for(ids: list[str], kinds: tuple[str, ...] = ("0", "F")) -> list:
        out = []
        for trade in Trade.objects.filter(id__in=ids).order_by("created_at"):
            price = trade.collar_price or trade.limit_price
            for exec_type, status, fill in (("0", "0", None), ("F", "2", price)):
                if exec_type not in kinds:
                    continue
                body = [
                    (Tag.ORDER_ID, f"DIAG-{trade.id.hex[:8]}"),
                    (Tag.CL_ORD_ID, trade.id),
                    (Tag.EXEC_ID, f"{trade.id.hex[:8]}-{exec_type}"),
                    (Tag.EXEC_TYPE, exec_type),
                    (Tag.ORD_STATUS, status),
                    (Tag.SYMBOL, trade.symbol),
                    (Tag.SIDE, "1"),
                    (Tag.ORDER_QTY, trade.quantity.normalize()),
                    (Tag.CUM_QTY, trade.quantity.normalize() if fill else 0),
                ]
                if fill:
                    body += [
                        (Tag.LAST_QTY, trade.quantity.normalize()),
                        (Tag.LAST_PX, fill.normalize()),
                    ]
                [message] = Framer().feed(
                    encode(
                        msg_type=MsgType.EXECUTION_REPORT,
                        sender="EXCHANGE",
                        target="DIAG-0",
                        seq=next(numbers),
                        body=body,
                    )
                )
                out.append(message)
        return out

    def book_one_by_one(messages) -> None:
        for message in messages:
            with transaction.atomic():
                booking([message])

    timed_reports, counted_reports = reports_for(timed_ids), reports_for(counted_ids)
    stages.append(
        _measure(
            "executor: one execution report booked (ack or fill)",
            len(timed_reports),
            lambda: book_one_by_one(timed_reports),
            lambda: book_one_by_one(counted_reports),
        )
    )

    # Under a backlog: a poll of BATCH messages in one transaction, and their
    # fills (a marketable order's only report) booked in one transaction.
    batch_timed = [place(c) for c in clients[:BATCH]]
    batch_counted = [place(c) for c in clients[BATCH : 2 * BATCH]]

    def handle_as_one_poll(ids: list[str]) -> None:
        events = OutboxEvent.objects.filter(payload__trade_id__in=ids).order_by("id")
        handle_messages(
            [
                (
                    Event(event.pk, event.event_type, event.payload).encode(),
                    MessagePosition(topic, 0, next(offsets)),
                )
                for event in events
            ],
            fence=fence,
            session=session,
            dead_letters=_NoDeadLetters(),
        )

    stages.append(
        _measure(
            f"executor: a poll of {BATCH} trade.placed messages, per message",
            BATCH,
            lambda: handle_as_one_poll(batch_timed),
            lambda: handle_as_one_poll(batch_counted),
        )
    )

    def book_as_one_batch(messages) -> None:
        with transaction.atomic():
            booking(messages)

    fills_timed = reports_for(batch_timed, kinds=("F",))
    fills_counted = reports_for(batch_counted, kinds=("F",))
    stages.append(
        _measure(
            f"executor: {BATCH} fills booked in one transaction, per report",
            BATCH,
            lambda: book_as_one_batch(fills_timed),
            lambda: book_as_one_batch(fills_counted),
        )
    )
    trade_ids = timed_ids + counted_ids + batch_timed + batch_counted
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
        # Why one quote costs what it does, against the database's round trip
        # on the same loopback.
        "exchange_vs_postgres_rtt_ratio": ratio(
            exchange_rtt["p50_ms"], postgres["postgres_rtt_p50_ms"]
        ),
        "stages": stages,
        "trade_statuses": dict(statuses),
        "reports_per_trade": 2,
    }


def _exchange_rtt(url: str, samples: int = 50) -> dict:
    """Round trip of the cheapest exchange HTTP request on a keep-alive session:
    what every quote (api) pays at least."""
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
