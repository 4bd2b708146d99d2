"""Fixtures of the chaos suite: one fresh ChaosSystem (processes, topics, ZooKeeper
subtree, exchange store) per scenario, on pytest-django's test database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.harness import ChaosSystem, ensure_stack_up


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenario on the real stack and processes"
    )


@pytest.fixture(scope="session")
def chaos_results(tmp_path_factory) -> Path:
    """One line per scenario (``scenario=... violations=...``)."""
    path = tmp_path_factory.getbasetemp() / "chaos-results.txt"
    path.touch()
    return path


@pytest.fixture
def chaos_db(django_db_setup, django_db_blocker):
    """Real commits, visible to the child processes (like ``live_db``)."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture(scope="session")
def chaos_exchange_store(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chaos-exchange") / "store.sqlite3"


@pytest.fixture
def make_system(chaos_db, chaos_exchange_store, tmp_path_factory, request) -> Iterator:
    """``make_system(relays=2, session_timeout=4.0)`` starts a fresh system;
    stopped after the test."""
    started: list[ChaosSystem] = []

    def make(*, start: bool = True, **options) -> ChaosSystem:
        name = request.node.name.replace("[", "-").replace("]", "")
        system = ChaosSystem(
            name,
            tmp_path_factory.mktemp(f"chaos-{name}"),
            store=chaos_exchange_store,
            **options,
        )
        started.append(system)
        if start:
            system.start()
        return system

    yield make
    try:
        ensure_stack_up()  # a scenario that stopped a service must not sink the next
    finally:
        for system in started:
            system.stop()
            print(f"\nchaos process logs: {system.launcher.log_dir}")
