"""Every metric is scraped from the running process and moves when the thing it
counts happens; health and readiness answer on every role."""

from __future__ import annotations

import pytest
import requests

from broker.models import OutboxEvent
from broker.topics import all_topics
from devstack.wait import wait_until
from tests.integration.conftest import (
    customer_on_topic,
    place_over_http,
    wait_for_status,
)
from tests.integration.scraping import answers, scrape, total, worker_url

pytestmark = pytest.mark.integration


def test_api_health_readiness_and_request_metrics(system, live_db):
    assert requests.get(f"{system.api_url}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{system.api_url}/readyz", timeout=5).json() == {
        "status": "ok"
    }
    before = scrape(f"{system.api_url}/metrics")
    _, token = customer_on_topic(all_topics()[0])
    place_over_http(system, token, quantity="1")
    after = scrape(f"{system.api_url}/metrics")

    name = "broker_http_requests_total"
    labels = {"method": "POST", "route": "api/v1/trades", "status": "201"}
    assert total(after, name, **labels) == total(before, name, **labels) + 1
    latency = "broker_http_request_seconds_count"
    assert total(after, latency, route="api/v1/trades") > total(
        before, latency, route="api/v1/trades"
    )


def test_relay_and_executor_metrics_move_with_a_trade(system, live_db):
    relays = [p for p in system.launcher.processes if p.name.startswith("relay")]
    executors = list(system.executors.values())
    for process in [*relays, *executors]:
        # A process started by an earlier test may still be booting.
        wait_until(
            lambda p=process: answers(worker_url(p, "/healthz")),
            timeout=30,
            what=f"{process.name} live",
        )
        wait_until(
            lambda p=process: answers(worker_url(p, "/readyz")),
            timeout=30,
            what=f"{process.name} ready",
        )

    def everything() -> list[dict]:
        return [scrape(worker_url(p)) for p in [*relays, *executors]]

    def summed(name: str, samples: list[dict], **labels: str) -> float:
        return sum(total(s, name, **labels) for s in samples)

    topic = all_topics()[2]
    wait_until(
        lambda: (
            summed("broker_executor_leader", everything()) == len(all_topics())
            and summed("broker_relay_shards_held", everything()) == len(all_topics())
        ),
        timeout=30,
        what="every topic led and every shard held, per the gauges",
    )
    before = everything()
    # Led or not, every executor reports every topic: a topic nobody leads sums
    # to 0 (the TopicWithoutLeader alert) instead of vanishing.
    for samples in before[len(relays) :]:
        reported = {
            dict(labels)["topic"]
            for (name, labels) in samples
            if name == "broker_executor_leader"
        }
        assert reported == set(all_topics())
    for metric in ("broker_outbox_unpublished_rows", "broker_outbox_lag_seconds"):
        assert any((metric, ()) in s for s in before), metric

    _, token = customer_on_topic(topic)
    trade = place_over_http(system, token, quantity="1")
    wait_for_status(system, token, trade["id"], "filled")

    def moved() -> bool:
        after = everything()
        return (
            summed("broker_outbox_published_total", after)
            > summed("broker_outbox_published_total", before)
            and summed("broker_executor_messages_total", after, topic=topic)
            > summed("broker_executor_messages_total", before, topic=topic)
            and summed("broker_fix_logged_on", after, topic=topic) == 1
        )

    wait_until(moved, timeout=30, what="relay and executor counters to move")
    assert summed("broker_executor_epoch", everything(), topic=topic) > 0
    wait_until(
        lambda: any(
            name == "broker_executor_consumer_lag"
            and dict(labels).get("topic") == topic
            for s in everything()
            for (name, labels) in s
        ),
        timeout=30,
        what="the consumer lag gauge of the topic",
    )


def test_exchange_metrics_count_orders_fills_and_injected_faults(system, live_db):
    url = f"{system.exchange_url}/metrics"
    before = scrape(url)
    _, token = customer_on_topic(all_topics()[1])
    trade = place_over_http(system, token, quantity="1")
    wait_for_status(system, token, trade["id"], "filled")
    system.exchange_admin("faults", {"error_rate": 1.0, "paths": ["/symbols"]})
    try:
        refused = requests.get(f"{system.exchange_url}/symbols", timeout=5)
        assert refused.status_code == 503
        after = scrape(url)  # (configuring faults again resets their counters)
    finally:
        system.exchange_admin("faults", {})
    assert total(after, "exchange_orders_total", status="filled") > total(
        before, "exchange_orders_total", status="filled"
    )
    assert total(after, "exchange_executions_total") > total(
        before, "exchange_executions_total"
    )
    assert total(after, "exchange_injected_faults_total") >= 1


def test_fix_reconnects_and_the_outbox_backlog_move_their_metrics(system, live_db):
    """The FIX session's logon count moves when the exchange cuts the connection
    (the order still fills, once); the relay's backlog gauges rise for a row no
    relay serves (a stuck shard) and fall when it goes."""
    relays = [p for p in system.launcher.processes if p.name.startswith("relay")]
    executors = list(system.executors.values())

    def summed(name: str, processes, **labels: str) -> float:
        return sum(total(scrape(worker_url(p)), name, **labels) for p in processes)

    topic = all_topics()[3]
    logons_before = summed("broker_fix_events_total", executors, event="logon")
    _, token = customer_on_topic(topic)
    system.exchange_admin("faults", {"fix_disconnect_after": 1})
    try:
        trade = place_over_http(system, token, quantity="1")
        wait_until(
            lambda: (
                summed("broker_fix_events_total", executors, event="logon")
                > logons_before
            ),
            timeout=30,
            what="the leader to log on again after the cut",
        )
    finally:
        system.exchange_admin("faults", {})
    wait_for_status(system, token, trade["id"], "filled")
    assert len(system.exchange_orders(trade["id"])) == 1
    wait_until(
        lambda: summed("broker_fix_logged_on", executors, topic=topic) == 1,
        timeout=30,
        what="the session logged on again",
    )

    stuck = OutboxEvent.objects.create(
        topic="unserved.trades.0", key="0", event_type="trade.placed", payload={}
    )
    try:
        wait_until(
            lambda: (
                summed("broker_outbox_unpublished_rows", relays) >= 1
                and summed("broker_outbox_lag_seconds", relays) >= 1
            ),
            timeout=30,
            what="the backlog gauges to show the unserved row",
        )
    finally:
        stuck.delete()
    wait_until(
        lambda: summed("broker_outbox_unpublished_rows", relays) == 0,
        timeout=30,
        what="the backlog gauges to drop back",
    )
