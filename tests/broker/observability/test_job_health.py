"""The periodic jobs' metrics: each successful task run is recorded in the cache
(the local Redis) and the celery worker's collector reads it at scrape time."""

from __future__ import annotations

import time

import pytest
from django.core.cache import cache
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from broker import jobs, tasks
from broker.observability import job_health
from broker.observability.job_health import (
    JOBS,
    JobHealthCollector,
    record_job_success,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_recorded_runs(monkeypatch):
    """The suite's cache outlives a test: start and end with no run recorded and
    no audit result."""
    keys = [job_health._KEY.format(job) for job in JOBS]
    monkeypatch.setattr(jobs, "AUDIT_CACHE_KEY", "ledger_audit:job-health-test")
    cache.delete_many([*keys, jobs.AUDIT_CACHE_KEY])
    yield
    cache.delete_many([*keys, jobs.AUDIT_CACHE_KEY])


def scrape() -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(JobHealthCollector())
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def last_success(samples, job: str) -> float | None:
    return samples.get(("broker_job_last_success_timestamp_seconds", (("job", job),)))


def test_nothing_is_reported_before_a_job_ran():
    assert scrape() == {}


def test_a_recorded_run_is_scraped_with_its_time_and_items():
    before = time.time()
    record_job_success("prune_outbox", items=42)

    samples = scrape()
    assert before <= last_success(samples, "prune_outbox") <= time.time()
    assert samples[("broker_job_last_items", (("job", "prune_outbox"),))] == 42
    assert last_success(samples, "audit_ledger") is None


def test_each_task_records_its_successful_run():
    for task in (
        tasks.reconcile_stuck_trades,
        tasks.expire_day_orders,
        tasks.prune_outbox,
        tasks.audit_ledger,
    ):
        task.apply().get()

    samples = scrape()
    for job in JOBS:
        assert last_success(samples, job) is not None, job
    # The audit also publishes what it found: clean books.
    assert samples[("broker_ledger_audit_violations", ())] == 0


def test_a_failing_job_records_nothing(monkeypatch):
    def broken(**_):
        raise RuntimeError("database went away")

    monkeypatch.setattr(jobs, "expire_day_orders", broken)
    with pytest.raises(RuntimeError):
        tasks.expire_day_orders.apply().get()

    assert last_success(scrape(), "expire_day_orders") is None


def test_the_audit_gauge_is_the_last_audits_violation_count(monkeypatch):
    monkeypatch.setattr(jobs, "ledger_discrepancies", lambda: ["a", "b", "c"])
    assert tasks.audit_ledger.apply().get() == 3

    samples = scrape()
    assert samples[("broker_ledger_audit_violations", ())] == 3
    assert samples[("broker_job_last_items", (("job", "audit_ledger"),))] == 3


def test_an_unreachable_cache_leaves_the_series_out_not_the_scrape(monkeypatch, caplog):
    record_job_success("audit_ledger", items=0)

    def refuse(*_args, **_kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "get_many", refuse)
    assert scrape() == {}
    assert "job runs unreadable from the cache" in caplog.text


def test_recording_survives_an_unreachable_cache(monkeypatch, caplog):
    def refuse(*_args, **_kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "set", refuse)
    record_job_success("prune_outbox", items=1)  # does not raise
    assert "job run not recorded" in caplog.text


def test_an_unknown_job_name_is_refused():
    with pytest.raises(ValueError, match="unknown job"):
        record_job_success("reconcile", items=1)


def test_registration_describes_the_families_without_the_cache(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("describe() must not read the cache")

    monkeypatch.setattr(cache, "get_many", refuse)
    names = {family.name for family in JobHealthCollector().describe()}
    assert names == {
        "broker_job_last_success_timestamp_seconds",
        "broker_job_last_items",
        "broker_ledger_audit_violations",
    }
