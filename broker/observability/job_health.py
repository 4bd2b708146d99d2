"""The periodic jobs' health for Prometheus: when each job last succeeded, what
that run did, and what the last ledger audit found.

The jobs run in Celery's pool processes, whose metrics the worker's own endpoint
cannot see, so each successful run records itself in the cache (Redis) and the
celery worker's ``/metrics`` reads the records at scrape time. A job that fails,
or that beat stops sending, shows as a timestamp that stops moving."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from django.core.cache import cache
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from broker.jobs import last_audit

logger = logging.getLogger(__name__)

# The jobs of broker.tasks, by the name their log lines and labels use.
JOBS = ("reconcile_stuck_trades", "expire_day_orders", "prune_outbox", "audit_ledger")
_KEY = "jobs:last_success:{}"


def record_job_success(job: str, *, items: int) -> None:
    """Record a successful run of ``job`` that handled ``items`` (trades handed to
    reconcile, orders expired, rows pruned, ledger violations found). A cache
    failure is logged, not raised: the job's own work is done and logged anyway."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}")
    try:
        cache.set(_KEY.format(job), {"at": time.time(), "items": items}, timeout=None)
    except Exception:
        logger.warning("job run not recorded in the cache job=%s", job, exc_info=True)


def _succeeded() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "broker_job_last_success_timestamp_seconds",
        "When the job last finished without an error (Unix time)",
        labels=["job"],
    )


def _items() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "broker_job_last_items",
        "What the job's last successful run handled: trades handed to reconcile, "
        "orders expired, rows pruned, ledger violations found",
        labels=["job"],
    )


def _audit_violations(count: int | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "broker_ledger_audit_violations",
        "Violations the last ledger audit found (0: the books balance)",
        value=count,
    )


class JobHealthCollector(Collector):
    """Yields the recorded runs at each scrape; nothing when the cache does not
    answer (the scrape still succeeds, and the series' absence is itself an
    alert)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The families without reading the cache (registration calls this)."""
        yield from (_succeeded(), _items(), _audit_violations())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            runs = cache.get_many([_KEY.format(job) for job in JOBS])
        except Exception:
            logger.warning("job runs unreadable from the cache", exc_info=True)
            return
        succeeded, items = _succeeded(), _items()
        for job in JOBS:
            run = runs.get(_KEY.format(job))
            if run is not None:
                succeeded.add_metric([job], run["at"])
                items.add_metric([job], run["items"])
        yield succeeded
        yield items
        audit = last_audit()
        if audit is not None:
            yield _audit_violations(audit["count"])
