"""The running system for integration tests: real PostgreSQL (pytest-django's test
database), Kafka, ZooKeeper from the local stack, and the project's own processes
(exchange_mock, relay, three executors, api) started as real child processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.conf import settings

from broker.models import Customer, TopicLeader
from broker.topics import all_topics, dead_letter_topic, topic_for_customer
from devstack.launcher import AppLauncher, AppProcess, free_port
from devstack.wait import wait_until
from exchange_mock.admin import admin_headers
from tests.factories import make_customer
from tests.stack_cleanup import drop_topics_and_znodes

EXECUTORS = ("executor-1", "executor-2", "executor-3")


@dataclass
class RunningSystem:
    launcher: AppLauncher
    api_url: str
    exchange_url: str
    executors: dict[str, AppProcess]
    exchange_store: Path

    def restart_exchange(self, **env: str) -> None:
        """Stop exchange_mock and start it again on the same store and address
        (its orders, feeds and epochs survive), with ``env`` overrides."""
        old = next(p for p in self.launcher.processes if p.name == "exchange_mock")
        assert old.stop() == 0
        self.launcher.processes.remove(old)
        self.launcher.start_exchange(
            self.exchange_url, store=self.exchange_store, extra_env=env
        )

    def session(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        return session

    def exchange_orders(self, client_order_id: str) -> list[dict]:
        orders = requests.get(f"{self.exchange_url}/orders", timeout=10).json()
        return [o for o in orders["orders"] if o["client_order_id"] == client_order_id]

    def exchange_admin(self, path: str, body: dict | None = None) -> dict:
        response = requests.post(
            f"{self.exchange_url}/admin/{path}",
            json=body or {},
            headers=admin_headers(),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def set_quote(self, symbol: str, *, last: str | None = None, size=None) -> None:
        """Move the exchange's price (and touch size) of ``symbol``; resting
        orders that now cross are matched at once."""
        body = {}
        if last is not None:
            body["last"] = last
        if size is not None:
            body["size"] = str(size)
        self.exchange_admin(f"quotes/{symbol}", body)

    def quote(self, symbol: str) -> dict:
        return requests.get(f"{self.exchange_url}/quotes/{symbol}", timeout=10).json()

    def leaders(self) -> dict[str, TopicLeader]:
        return {
            leader.topic: leader
            for leader in TopicLeader.objects.filter(topic__in=all_topics())
        }

    def wait_all_topics_led(self, *, by: set[str], timeout: float = 60) -> None:
        def led() -> bool:
            leaders = self.leaders()
            return len(leaders) == len(all_topics()) and all(
                leader.holder in by for leader in leaders.values()
            )

        wait_until(led, timeout=timeout, interval=0.1, what="a leader for every topic")

    def start_executor(self, name: str) -> AppProcess:
        process = self.launcher.start_executor(name)
        self.executors[name] = process
        return process


def database_url() -> str:
    db = settings.DATABASES["default"]  # NAME is the test database by now
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/"
        f"{db['NAME']}"
    )


@pytest.fixture(scope="session")
def system(
    django_db_setup, django_db_blocker, tmp_path_factory
) -> Iterator[RunningSystem]:
    exchange_url = f"http://127.0.0.1:{free_port()}"
    api_port = free_port()
    launcher = AppLauncher(
        env={
            "DJANGO_SETTINGS_MODULE": "broker.settings.local",
            "DATABASE_URL": database_url(),
            "TRADE_TOPIC_PREFIX": settings.TRADE_TOPIC_PREFIX,
            "TRADE_TOPICS": str(settings.TRADE_TOPICS),
            "ZOOKEEPER_ROOT": settings.ZOOKEEPER_ROOT,
            "ZOOKEEPER_HOSTS": settings.ZOOKEEPER_HOSTS,
            "ZOOKEEPER_SESSION_TIMEOUT": str(settings.ZOOKEEPER_SESSION_TIMEOUT),
            "KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA_BOOTSTRAP_SERVERS,
            "EXCHANGE_URL": exchange_url,
            # The exchange listens for FIX here and the executors connect here.
            "EXCHANGE_FIX_PORT": str(free_port()),
            # Quotes move only when a test moves them: fills are deterministic.
            "EXCHANGE_TICK_SECONDS": "0",
            "RELAY_POLL_SECONDS": "0.5",
            "WEB_CONCURRENCY": "1",
            "CACHE_KEY_PREFIX": f"test-{settings.TEST_RUN_ID}",
            # Throttling has its own tests; generated load must not hit it.
            "THROTTLE_CUSTOMER_RATE": "100000/minute",
            "THROTTLE_IP_RATE": "100000/minute",
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    running = RunningSystem(
        launcher=launcher,
        api_url=f"http://127.0.0.1:{api_port}",
        exchange_url=exchange_url,
        executors={},
        exchange_store=tmp_path_factory.mktemp("exchange") / "store.sqlite3",
    )
    try:
        launcher.start_exchange(exchange_url, store=running.exchange_store)
        launcher.start_relay()
        for name in EXECUTORS:
            running.start_executor(name)
        launcher.start_api(api_port)
        with django_db_blocker.unblock():
            running.wait_all_topics_led(by=set(EXECUTORS))
        yield running
    finally:
        launcher.stop_all()
        _drop_test_topics_and_znodes()
        print(f"\nintegration process logs: {launcher.log_dir}")


def _drop_test_topics_and_znodes() -> None:
    drop_topics_and_znodes(
        [*all_topics(), dead_letter_topic()], settings.ZOOKEEPER_ROOT
    )


def customer_on_topic(topic: str, cash: str = "100000.00") -> tuple[Customer, str]:
    """A fresh customer whose events route to ``topic``."""
    for _ in range(200):
        customer, token = make_customer(cash)
        if topic_for_customer(customer.pk) == topic:
            return customer, token
    raise AssertionError(f"no customer hashed to {topic}")


def place_over_http(
    system: RunningSystem, token: str, *, symbol="AAPL", side="buy", quantity="2"
) -> dict:
    response = system.session(token).post(
        f"{system.api_url}/api/v1/trades",
        json={"symbol": symbol, "side": side, "quantity": quantity, "type": "market"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_status(
    system: RunningSystem, token: str, trade_id: str, status: str, timeout=60
) -> dict:
    session = system.session(token)

    def reached() -> dict | None:
        body = session.get(
            f"{system.api_url}/api/v1/trades/{trade_id}", timeout=10
        ).json()
        return body if body["status"] == status else None

    return wait_until(
        reached, timeout=timeout, interval=0.05, what=f"trade {trade_id} {status}"
    )
