"""The periodic-jobs role as it runs: a real Celery worker and beat (child processes
started by their manage.py commands) on the local Redis and the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from broker.events import EventType
from broker.models import Account, OutboxEvent, Trade, TradeEvent
from devstack.launcher import REPO_ROOT, AppLauncher
from devstack.wait import wait_until
from tests.factories import make_customer
from tests.integration.conftest import database_url
from tests.integration.scraping import scrape, worker_url

pytestmark = pytest.mark.integration


def _child_env(tmp_path) -> dict[str, str]:
    """What tests/integration/conftest.py gives its children, plus a queue and a
    beat schedule of this test's own and a one-second stuck-trade job."""
    return {
        "DJANGO_SETTINGS_MODULE": "broker.settings.local",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_KEY_PREFIX": f"test-{settings.TEST_RUN_ID}",
        "TRADE_TOPIC_PREFIX": settings.TRADE_TOPIC_PREFIX,
        "TRADE_TOPICS": str(settings.TRADE_TOPICS),
        "CELERY_QUEUE": f"test-{settings.TEST_RUN_ID}-{uuid.uuid4().hex[:6]}.jobs",
        "CELERY_BEAT_SCHEDULE_FILE": str(tmp_path / "celerybeat-schedule"),
        "CELERY_CONCURRENCY": "1",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "STUCK_TRADE_SECONDS": "1",
        # Only the reconcile job runs during the test.
        "EXPIRE_INTERVAL_SECONDS": "3600",
        "PRUNE_INTERVAL_SECONDS": "3600",
        "AUDIT_INTERVAL_SECONDS": "3600",
    }


@pytest.fixture
def launcher(tmp_path) -> Iterator[AppLauncher]:
    env = _child_env(tmp_path)
    launcher = AppLauncher(env=env, log_dir=tmp_path / "logs")
    try:
        yield launcher
    finally:
        launcher.stop_all()
        _drop_queue(env["CELERY_QUEUE"])


def _drop_queue(queue: str) -> None:
    """The local Redis outlives the suite: leave no keys of this test's queue."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.delete(
            queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"
        )
    finally:
        client.close()


def stuck_trade() -> Trade:
    """A submitted trade nobody has touched for ten minutes. Written directly and
    without a hold or a placement event: nothing else in the running suite acts on
    it until the job asks for a reconcile."""
    customer, _ = make_customer()
    trade = Trade.objects.create(
        account=Account.objects.get(customer=customer),
        symbol="AAPL",
        side=Trade.Side.BUY,
        type=Trade.Type.LIMIT,
        limit_price=Decimal("1.00"),
        quantity=Decimal("1"),
        status=Trade.Status.SUBMITTED,
        submitted_at=timezone.now(),
    )
    Trade.objects.filter(pk=trade.pk).update(
        updated_at=timezone.now() - timedelta(minutes=10)
    )
    return trade


def test_beat_and_worker_request_a_reconcile_of_a_stuck_trade(live_db, launcher):
    trade = stuck_trade()
    started = time.time()

    worker = launcher.manage("celery-worker", "celery_worker")
    beat = launcher.manage("celery-beat", "celery_beat")

    def requested() -> TradeEvent | None:
        for process in (worker, beat):
            assert process.alive(), f"{process.name} exited:\n{process.log_tail()}"
        return TradeEvent.objects.filter(
            trade=trade,
            kind="outbox",
            detail__event_type=EventType.TRADE_RECONCILE_REQUESTED,
        ).first()

    request = wait_until(
        requested, timeout=20, interval=0.1, what="a reconcile request"
    )
    # The worker's runs are on its /metrics (recorded in Redis by the pool
    # process); earlier tests' records share the cache, hence the time check.
    job = (("job", "reconcile_stuck_trades"),)

    def recorded_since_start() -> dict | None:
        samples = scrape(worker_url(worker))
        at = samples.get(("broker_job_last_success_timestamp_seconds", job), 0)
        return samples if started <= at <= time.time() else None

    samples = wait_until(
        recorded_since_start,
        timeout=20,
        interval=0.2,
        what="this worker's reconcile run on its metrics",
    )
    assert ("broker_job_last_items", job) in samples
    assert request.detail["requested_by"] == "job:reconcile_stuck_trades"
    event = OutboxEvent.objects.get(pk=request.detail["outbox_id"])
    assert event.event_type == EventType.TRADE_RECONCILE_REQUESTED
    assert event.payload["trade_id"] == str(trade.id)
    # The job asked; only the leader may write the trade.
    assert Trade.objects.get(pk=trade.pk).status == Trade.Status.SUBMITTED

    assert beat.stop() == 0, beat.log_tail()
    assert worker.stop() == 0, worker.log_tail()
    assert "job=reconcile_stuck_trades" in worker.log_path.read_text()


def _audit_process(tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "audit"],
        cwd=REPO_ROOT,
        env={**os.environ, **_child_env(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_audit_command_exit_codes(live_db, tmp_path):
    customer, _ = make_customer()
    account = Account.objects.get(customer=customer)

    clean = _audit_process(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ledger audit: clean, 0 violations" in clean.stdout

    # Committed corruption, repaired whatever happens: the suite shares the db.
    Account.objects.filter(pk=account.pk).update(cash=F("cash") + 1)
    try:
        broken = _audit_process(tmp_path)
    finally:
        Account.objects.filter(pk=account.pk).update(cash=F("cash") - 1)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"account {account.pk}: cash" in broken.stdout
    assert "LEDGER AUDIT ALERT" in broken.stderr
