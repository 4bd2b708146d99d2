"""Celery tasks of the periodic jobs: thin wrappers around ``broker.jobs``. Every
task is idempotent (tasks are acknowledged late and may run twice)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from broker import jobs
from broker.celery import app


@app.task(name="broker.reconcile_stuck_trades")
def reconcile_stuck_trades() -> int:
    return jobs.reconcile_stuck_trades(
        older_than=timedelta(seconds=settings.STUCK_TRADE_SECONDS)
    )


@app.task(name="broker.expire_day_orders")
def expire_day_orders() -> int:
    return jobs.expire_day_orders()


@app.task(name="broker.prune_outbox")
def prune_outbox() -> dict[str, int]:
    return jobs.prune_outbox(retention=timedelta(hours=settings.OUTBOX_RETENTION_HOURS))


@app.task(name="broker.audit_ledger")
def audit_ledger() -> int:
    return len(jobs.audit_ledger())
