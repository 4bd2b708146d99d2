"""The alerting rules (k8s/monitoring/alerts.yaml) checked offline: every
expression parses as PromQL, reads only metrics the code exports, and every alert
names a severity, a summary and a runbook section that exists."""

from __future__ import annotations

import functools
import re

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

import broker.observability.metrics  # noqa: F401  (registers the metrics)
from broker.observability.job_health import JobHealthCollector
from tests.deploy.project import K8S, REPO

RULES_FILE = K8S / "monitoring" / "alerts.yaml"
RUNBOOK = "docs/OPERATIONS.md"
SEVERITIES = {"page", "ticket"}
# What each metric type exposes under its family name.
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def exported_metrics() -> set[str]:
    """Sample names the api, relay, executors and celery worker expose."""
    families = [*REGISTRY.collect(), *JobHealthCollector().describe()]
    return {
        family.name + suffix
        for family in families
        if family.name.startswith("broker_")
        for suffix in _SUFFIXES[family.type]
    }


def selected_metrics(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


@functools.cache
def runbook_anchors() -> set[str]:
    """GitHub's anchors of the runbook's headings: lower case, punctuation dropped
    (backticks, parentheses, commas...), spaces to hyphens."""
    anchors = set()
    for line in (REPO / RUNBOOK).read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _id(rule: dict) -> str:
    return rule["alert"]


@pytest.mark.parametrize("rule", rules(), ids=_id)
def test_the_expression_parses_and_reads_exported_metrics_only(rule):
    used = selected_metrics(rule["expr"])
    assert used, "an alert on no metric"
    assert used <= exported_metrics(), used - exported_metrics()


@pytest.mark.parametrize("rule", rules(), ids=_id)
def test_the_alert_says_how_bad_what_happened_and_what_to_do(rule):
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    page, _, anchor = rule["annotations"]["runbook_url"].partition("#")
    assert page == RUNBOOK
    assert anchor in runbook_anchors(), f"no runbook section #{anchor}"


def test_alert_names_are_unique():
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))


def test_what_is_never_allowed_pages_at_once():
    """Money out of balance and a topic nobody executes page without waiting."""
    by_name = {rule["alert"]: rule for rule in rules()}
    assert by_name["LedgerAuditViolations"]["labels"]["severity"] == "page"
    assert "for" not in by_name["LedgerAuditViolations"]
    assert by_name["TopicWithoutLeader"]["labels"]["severity"] == "page"


def test_the_checks_catch_a_misspelt_metric_and_a_bad_expression():
    assert "broker_outbox_lag_second" not in exported_metrics()
    assert selected_metrics("max(broker_outbox_lag_second) > 1") == {
        "broker_outbox_lag_second"
    }
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(broker_outbox_published_total[5m]) >")
