"""Celery tasks of the periodic jobs: thin wrappers around ``broker.jobs``. Every
task is idempotent (tasks are acknowledged late and may run twice). A run that
returns is recorded for the worker's metrics (broker.observability.job_health)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from broker import jobs
from broker.celery import app
from broker.observability.job_health import record_job_success


@app.task(name="broker.reconcile_stuck_trades")
def reconcile_stuck_trades() -> int:
    requested = jobs.reconcile_stuck_trades(
        older_than=timedelta(seconds=settings.STUCK_TRADE_SECONDS)
    )
    record_job_success("reconcile_stuck_trades", items=requested)
    return requested


@app.task(name="broker.expire_day_orders")
def expire_day_orders() -> int:
    expired = jobs.expire_day_orders()
    record_job_success("expire_day_orders", items=expired)
    return expired


@app.task(name="broker.prune_outbox")
def prune_outbox() -> dict[str, int]:
    deleted = jobs.prune_outbox(
        retention=timedelta(hours=settings.OUTBOX_RETENTION_HOURS)
    )
    record_job_success("prune_outbox", items=sum(deleted.values()))
    return deleted


@app.task(name="broker.audit_ledger")
def audit_ledger() -> int:
    violations = len(jobs.audit_ledger())
    record_job_success("audit_ledger", items=violations)
    return violations
