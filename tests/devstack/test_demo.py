"""``manage.py demo`` as a person runs it from a terminal: started in its own session
(the terminal's foreground process group), then stopped by SIGINT to that whole
group — what Ctrl-C sends. Real processes on the real local stack; faults are
injected for real (SIGKILL of an executor).

The demo runs on its own database, topics, ZooKeeper subtree, Celery queue, ports
and state directory, so it neither sees nor disturbs a developer's ``make demo`` or
the rest of the suite. Every process it starts inherits a marker variable, so the
test finds whatever it might leave behind — even a worker reparented to init.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from broker.services.transitions import TERMINAL
from devstack import procfs
from devstack.launcher import REPO_ROOT, free_port
from devstack.process import port_in_use
from devstack.wait import WaitTimeout, wait_until
from tests.stack_cleanup import drop_topics_and_znodes

pytestmark = pytest.mark.integration

MARKER = "DEMO_TEST_MARKER"
DEMO_ARGS = ["--customers", "3", "--trades-per-customer", "1"]
RUNNING = r"^Running; Ctrl-C to stop\.$"
START_TIMEOUT = 120.0  # to the "Running" line: startup and the demo trades
STOP_TIMEOUT = 60.0  # SIGINT to exit: every tier's SIGTERM grace fits in it
FILL_TIMEOUT = 60.0  # the ZooKeeper session timeout, an election, a fill


@dataclass
class DemoSetup:
    env: dict[str, str]
    api_url: str
    exchange_url: str
    ports: tuple[int, ...]
    database_url: str
    stack_dir: Path
    marker: str

    def leader(self, topic: str) -> str | None:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT holder FROM broker_topicleader WHERE topic = %s", [topic]
            ).fetchone()
        return None if row is None else row[0]


def _admin_dsn(dbname: str) -> str:
    db = settings.DATABASES["default"]
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{dbname}"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Iterator[DemoSetup]:
    run = uuid.uuid4().hex[:8]
    database = f"test_demo_{run}"
    maintenance = settings.DATABASES["default"]["NAME"]
    prefix = f"test-{run}-demo.trades"
    zk_root = f"/broker-test-{run}-demo"
    stack = tmp_path_factory.mktemp("demo-stack")
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    api_port, exchange_port, fix_port = sorted(ports)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "broker.settings.local",
        "DATABASE_URL": _admin_dsn(database),
        "KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA_BOOTSTRAP_SERVERS,
        "ZOOKEEPER_HOSTS": settings.ZOOKEEPER_HOSTS,
        "REDIS_URL": settings.REDIS_URL,
        "TRADE_TOPIC_PREFIX": prefix,
        "TRADE_TOPICS": "4",
        "ZOOKEEPER_ROOT": zk_root,
        "ZOOKEEPER_SESSION_TIMEOUT": "4",
        "CELERY_QUEUE": f"test-{run}-demo.jobs",
        "CELERY_BEAT_SCHEDULE_FILE": str(stack / "celerybeat-schedule"),
        "CACHE_KEY_PREFIX": f"test-{run}-demo",
        "STACK_DIR": str(stack),
        "API_PORT": str(api_port),
        "EXCHANGE_URL": f"http://127.0.0.1:{exchange_port}",
        "EXCHANGE_FIX_PORT": str(fix_port),
        MARKER: run,
    }
    with psycopg.connect(_admin_dsn(maintenance), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    demo = DemoSetup(
        env=env,
        api_url=f"http://127.0.0.1:{api_port}",
        exchange_url=env["EXCHANGE_URL"],
        ports=(api_port, exchange_port, fix_port),
        database_url=env["DATABASE_URL"],
        stack_dir=stack,
        marker=run,
    )
    try:
        migrate = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        yield demo
    finally:
        _kill_marked(run)  # only after a failure is there anything to kill
        with psycopg.connect(_admin_dsn(maintenance), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        drop_topics_and_znodes(
            [*(f"{prefix}.{n}" for n in range(4)), f"{prefix}.dlq"], zk_root
        )


def _marked(marker: str) -> list[int]:
    """Live processes started with our marker in their environment: the demo and
    everything it started, wherever they were reparented."""
    return [
        p.pid for p in procfs.processes() if procfs.environ(p.pid).get(MARKER) == marker
    ]


def _kill_marked(marker: str) -> None:
    for pid in _marked(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class Demo:
    """One ``manage.py demo`` in its own session, its output collected by a
    thread so every wait has a deadline."""

    def __init__(self, setup: DemoSetup) -> None:
        self.setup = setup
        self.popen = subprocess.Popen(
            [sys.executable, "manage.py", "demo", *DEMO_ARGS],
            cwd=REPO_ROOT,
            env=setup.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own session and group, as in a terminal
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self._lines)

    def report(self) -> str:
        """The demo's output and the tail of every log of its processes."""
        parts = [f"--- demo output (exit {self.popen.poll()}) ---", self.output]
        for log in sorted((self.setup.stack_dir / "logs" / "demo").glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            parts += [f"--- {log.name} ---", *tail]
        return "\n".join(parts)

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        regex = re.compile(pattern, re.MULTILINE)

        def seen() -> re.Match | None:
            found = regex.search(self.output)
            if found is None and self.popen.poll() is not None:
                self._reader.join(5)
                found = regex.search(self.output)
                if found is None:
                    pytest.fail(f"demo exited before {pattern!r}\n{self.report()}")
            return found

        try:
            return wait_until(seen, timeout=timeout, interval=0.1, what=pattern)
        except WaitTimeout as exc:
            pytest.fail(f"{exc}\n{self.report()}")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the demo's whole process group; its exit status."""
        pgid = os.getpgid(self.popen.pid)
        assert pgid == self.popen.pid
        os.killpg(pgid, signal.SIGINT)
        try:
            code = self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"demo still running {STOP_TIMEOUT:.0f}s after SIGINT\n{self.report()}"
            )
        self._reader.join(10)
        return code

    def assert_clean_exit(self, code: int) -> None:
        """Exit 0, no traceback, and nothing left: no process with our marker, in
        the demo's group or session, or listening on its ports."""
        report = self.report()
        assert code == 0, report
        assert "Traceback" not in self.output, report
        assert re.search(r"^SIGINT: stopping the demo\.$", self.output, re.M), report
        pid = self.popen.pid
        left = {
            "marked": _marked(self.setup.marker),
            "group": procfs.group_members(pid),
            "session": procfs.session_members(pid),
            **{f"port {p}": procfs.listening_pids(p) for p in self.setup.ports},
        }
        assert not any(left.values()), f"left behind: {left}\n{report}"
        for port in self.setup.ports:
            assert not port_in_use("127.0.0.1", port), f"port {port}\n{report}"


@pytest.fixture
def start_demo(setup) -> Iterator:
    demos: list[Demo] = []

    def start() -> Demo:
        demo = Demo(setup)
        demos.append(demo)
        return demo

    yield start
    for demo in demos:  # a test that failed half-way: stop what it started
        if demo.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(demo.popen.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                demo.popen.wait(STOP_TIMEOUT)
    _kill_marked(setup.marker)


def _place(setup: DemoSetup, token: str, symbol: str) -> dict:
    response = requests.post(
        f"{setup.api_url}/api/v1/trades",
        json={"symbol": symbol, "side": "buy", "type": "market", "quantity": "1"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def _filled_once(setup: DemoSetup, token: str, trade_id: str) -> dict:
    """The trade ends filled, its fills add up to its quantity, and the exchange
    saw its ClOrdID as exactly one order."""

    def terminal() -> dict | None:
        trade = requests.get(
            f"{setup.api_url}/api/v1/trades/{trade_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        return trade if trade["status"] in TERMINAL else None

    trade = wait_until(
        terminal, timeout=FILL_TIMEOUT, interval=0.1, what=f"trade {trade_id} filled"
    )
    assert trade["status"] == "filled", trade
    fills = sum(Decimal(f["quantity"]) for f in trade["fills"])
    assert fills == Decimal(trade["quantity"]) == Decimal(trade["filled_quantity"])
    orders = requests.get(f"{setup.exchange_url}/orders", timeout=10).json()["orders"]
    mine = [o for o in orders if o["client_order_id"] == trade_id]
    assert len(mine) == 1, mine
    return trade


def test_killed_executor_is_restarted_and_later_trades_fill_once(setup, start_demo):
    demo = start_demo()
    demo.wait_for(RUNNING, START_TIMEOUT)
    customers = re.findall(r"^customer \d+ \((\S+)\): token (\S+)$", demo.output, re.M)
    pids = dict(re.findall(r"^  (executor-\d+) +pid (\d+)$", demo.output, re.M))
    topic, token = customers[0]
    victim = setup.leader(topic)
    assert victim in pids, (topic, victim, pids, demo.report())

    os.kill(int(pids[victim]), signal.SIGKILL)
    demo.wait_for(rf"^{victim} exited \(killed by SIGKILL, pid {pids[victim]}\b", 10)
    # Placed at once: it waits for the failover, the case the design is built for.
    first = _place(setup, token, "AAPL")
    demo.wait_for(rf"^{victim} restarted \(pid \d+\)$", 30)
    led = demo.wait_for(rf"^{victim} led (.*): the other executors take over", 10)
    assert topic in led.group(1).split(", "), demo.report()
    demo.wait_for(
        rf"^{re.escape(topic)}: {victim} → \S+.* s after {victim} exited$",
        FILL_TIMEOUT,
    )
    try:
        _filled_once(setup, token, first["id"])
        after = [_place(setup, t, "MSFT") for _, t in customers]
        for trade, (_, owner) in zip(after, customers, strict=True):
            _filled_once(setup, owner, trade["id"])
    except (AssertionError, WaitTimeout) as exc:
        pytest.fail(f"{exc}\n{demo.report()}")
    # On a topic it led: that fill needed the failover.
    fill = demo.wait_for(
        rf"^next fill after {victim} exited: [\d.]+ s later, "
        r"on (\S+) \(a topic it led\)",
        10,
    )
    assert fill.group(1) in led.group(1).split(", "), demo.report()
    assert demo.popen.poll() is None, demo.report()

    demo.assert_clean_exit(demo.interrupt())


@pytest.mark.parametrize(
    "phase",
    [
        r"^Starting exchange_mock",  # processes being started and awaited
        r"^Placing \d+ market buys",  # demo trades in flight
        RUNNING,
        RUNNING,
    ],
    ids=["starting", "placing", "running", "running-again"],
)
def test_ctrl_c_stops_everything_and_the_next_demo_starts(setup, start_demo, phase):
    """Runs four times in a row on the same ports: each demo starts (so the one
    before left nothing holding them) and stops cleanly whenever Ctrl-C comes."""
    demo = start_demo()
    demo.wait_for(phase, START_TIMEOUT)
    demo.assert_clean_exit(demo.interrupt())
