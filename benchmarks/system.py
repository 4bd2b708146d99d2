"""A complete, isolated system for the benchmarks.

``BenchRun`` owns what one ``python -m benchmarks`` run creates on the shared local
stack: a fresh database ``bench_<runid>`` (migrated with ``manage.py migrate``), a
scratch database for pgbench, Kafka topics and a ZooKeeper subtree named after the
run, and a Redis cache prefix. ``cleanup()`` removes all of it, and is called from a
``finally`` (Ctrl-C included).

``System`` is one deployment of the project's own processes (exchange_mock, api,
relay, executors), started as child processes with ``AppLauncher`` against that
database, with its own topic prefix and ZooKeeper root, high throttle limits and
frozen exchange quotes (EXCHANGE_TICK_SECONDS=0). Several systems (different topic
counts) can be started one after another in one run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from benchmarks.util import Progress
from devstack.launcher import REPO_ROOT, AppLauncher, AppProcess, free_port
from devstack.wait import WaitTimeout, wait_until

DEFAULT_DATABASE_URL = "postgres://broker:broker@127.0.0.1:55432/broker"
# Generated load must never be throttled: the throttle still runs (its Redis
# round trip is part of the api's cost), with limits nothing reaches.
UNREACHABLE_RATE = "100000000/minute"
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN")


@dataclass(frozen=True)
class BenchCustomer:
    id: int
    account_id: int
    token: str


def database_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{name}"))


def topic_index(customer_id: int, topics: int) -> int:
    """broker.topics.topic_for_customer, for any topic count (stable CRC-32)."""
    return zlib.crc32(str(customer_id).encode()) % topics


@dataclass
class BenchRun:
    run_id: str
    base_db_url: str
    db_name: str
    pgbench_db: str
    kafka: str
    zookeeper: str
    redis_url: str
    log_dir: Path
    progress: Progress
    systems: list[System] = field(default_factory=list)
    customers: list[BenchCustomer] = field(default_factory=list)
    _created_dbs: list[str] = field(default_factory=list)
    _exchange: AppProcess | None = None
    _exchange_launcher: AppLauncher | None = None
    exchange_url: str = ""
    exchange_fix_port: int = 0

    def ensure_exchange(self) -> AppProcess:
        """One exchange_mock for the whole run, shared by every system: its
        exec ids restart at EX-000001-1 with each fresh store, and the broker's
        Execution.exec_id is unique across the database."""
        if self._exchange is None or not self._exchange.alive():
            if not self.exchange_url:
                self.exchange_url = f"http://127.0.0.1:{free_port()}"
            if not self.exchange_fix_port:
                self.exchange_fix_port = free_port()
            self._exchange_launcher = AppLauncher(
                env={
                    "EXCHANGE_TICK_SECONDS": "0",
                    "EXCHANGE_FIX_PORT": str(self.exchange_fix_port),
                    "LOG_LEVEL": "INFO",
                },
                log_dir=self.log_dir,
            )
            self._exchange = self._exchange_launcher.start_exchange(self.exchange_url)
        return self._exchange

    @property
    def db_url(self) -> str:
        return database_url(self.base_db_url, self.db_name)

    @property
    def pgbench_url(self) -> str:
        return database_url(self.base_db_url, self.pgbench_db)

    @property
    def topic_base(self) -> str:
        return f"bench-{self.run_id}"

    @property
    def zk_base(self) -> str:
        return f"/bench-{self.run_id}"

    @property
    def cache_prefix(self) -> str:
        return f"bench-{self.run_id}"

    @classmethod
    def create(cls, progress: Progress) -> BenchRun:
        run_id = uuid.uuid4().hex[:8]
        log_dir = Path(tempfile.gettempdir()) / f"bench-{run_id}"
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(
            run_id=run_id,
            base_db_url=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            db_name=f"bench_{run_id}",
            pgbench_db=f"bench_{run_id}_pgbench",
            kafka=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:59092"),
            zookeeper=os.environ.get("ZOOKEEPER_HOSTS", "127.0.0.1:52181"),
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:56379/0"),
            log_dir=log_dir,
            progress=progress,
        )

    # -- databases ------------------------------------------------------------

    def admin_connect(self) -> psycopg.Connection:
        return psycopg.connect(self.base_db_url, autocommit=True, connect_timeout=10)

    def connect(self, url: str | None = None) -> psycopg.Connection:
        """A dedicated autocommit connection to the bench database."""
        return psycopg.connect(url or self.db_url, autocommit=True, connect_timeout=10)

    def create_databases(self) -> None:
        with self.admin_connect() as conn:
            for name in (self.db_name, self.pgbench_db):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                self._created_dbs.append(name)

    def setup_django(self) -> None:
        """Point this process's Django at the bench database (the driver creates
        customers and reads results through the ORM)."""
        os.environ["DATABASE_URL"] = self.db_url
        os.environ["DJANGO_SETTINGS_MODULE"] = "broker.settings.local"
        os.environ["CACHE_KEY_PREFIX"] = self.cache_prefix
        os.environ.setdefault("LOG_LEVEL", "WARNING")
        import django

        django.setup()

    def migrate(self) -> None:
        log = self.log_dir / "migrate.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=REPO_ROOT,
                env={**os.environ, "DATABASE_URL": self.db_url},
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=300,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"migrate failed; see {log}:\n{log.read_text()[-2000:]}")

    def settle_postgres(self, timeout: float = 120.0) -> float:
        """Wait, at most ``timeout`` seconds, until no autovacuum worker runs, so a
        section does not measure the vacuum of what the one before it wrote
        (pgbench's tables, a placement burst). Returns the seconds waited; at the
        deadline the section starts anyway (the wait is in the results)."""
        started = time.monotonic()
        with self.admin_connect() as conn:

            def quiet() -> bool:
                return not conn.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE backend_type = 'autovacuum worker'"
                ).fetchone()[0]

            with contextlib.suppress(WaitTimeout):
                wait_until(
                    quiet,
                    timeout=timeout,
                    interval=0.5,
                    what="autovacuum to finish",
                    progress=lambda elapsed: self.progress.update(
                        f"waiting for autovacuum to finish ({elapsed:.0f}s)"
                    ),
                )
        return round(time.monotonic() - started, 1)

    def set_synchronous_commit(self, value: str) -> None:
        """For new connections to the bench database (restart the api after)."""
        with self.admin_connect() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                    sql.Identifier(self.db_name), sql.Literal(value)
                )
            )

    # -- customers -------------------------------------------------------------

    def create_customers(self, count: int, cash: Decimal) -> list[BenchCustomer]:
        """``count`` customers with funded accounts and API tokens, in bulk. The
        deposit goes through a ledger entry, so the ledger audit still holds."""
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import make_password
        from django.db import transaction

        from broker.models import Account, ApiToken, Customer, LedgerEntry

        user_model = get_user_model()
        start = len(self.customers)
        unusable = make_password(None)
        with transaction.atomic():
            users = user_model.objects.bulk_create(
                [
                    user_model(
                        username=f"bench-{self.run_id}-{start + i}", password=unusable
                    )
                    for i in range(count)
                ]
            )
            customers = Customer.objects.bulk_create(
                [Customer(user=user) for user in users]
            )
            accounts = Account.objects.bulk_create(
                [Account(customer=c, cash=cash) for c in customers]
            )
            LedgerEntry.objects.bulk_create(
                [
                    LedgerEntry(
                        account=a,
                        kind=LedgerEntry.Kind.DEPOSIT,
                        bucket=LedgerEntry.Bucket.CASH,
                        asset="USD",
                        amount=cash,
                        memo="benchmark funding",
                    )
                    for a in accounts
                ]
            )
            tokens = [secrets.token_urlsafe(32) for _ in users]
            ApiToken.objects.bulk_create(
                [
                    ApiToken(
                        user=user,
                        key_hash=hashlib.sha256(token.encode()).hexdigest(),
                        prefix=token[:8],
                    )
                    for user, token in zip(users, tokens, strict=True)
                ]
            )
        made = [
            BenchCustomer(id=c.pk, account_id=a.pk, token=t)
            for c, a, t in zip(customers, accounts, tokens, strict=True)
        ]
        self.customers.extend(made)
        return made

    # -- cleanup ---------------------------------------------------------------

    def cleanup(self, *, keep_database: bool = False) -> list[str]:
        """Stop every system, delete the run's topics, znodes, cache keys and
        databases. Never raises; returns what could not be cleaned."""
        problems: list[str] = []
        for system in reversed(self.systems):
            try:
                system.stop()
            except Exception as exc:  # keep cleaning
                problems.append(f"stop {system.name}: {exc!r}")
        self.systems.clear()
        if self._exchange_launcher is not None:
            try:
                self._exchange_launcher.stop_all()
            except Exception as exc:
                problems.append(f"stop exchange_mock: {exc!r}")
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        problems += self._delete_topics()
        problems += self._delete_znodes()
        problems += self._delete_cache_keys()
        if not keep_database:
            problems += self._drop_databases()
        return problems

    def _delete_topics(self) -> list[str]:
        try:
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.kafka, "log_level": 3})
            topics = [
                t
                for t in admin.list_topics(timeout=10).topics
                if t.startswith(self.topic_base)
            ]
            if topics:
                for future in admin.delete_topics(
                    topics, operation_timeout=20
                ).values():
                    with contextlib.suppress(Exception):
                        future.result(timeout=30)
        except Exception as exc:
            return [f"kafka topics {self.topic_base}*: {exc!r}"]
        return []

    def _delete_znodes(self) -> list[str]:
        try:
            from kazoo.client import KazooClient

            zk = KazooClient(hosts=self.zookeeper)
            zk.start(timeout=10)
            try:
                zk.delete(self.zk_base, recursive=True)
            except Exception:
                pass
            finally:
                zk.stop()
                zk.close()
        except Exception as exc:
            return [f"znodes {self.zk_base}: {exc!r}"]
        return []

    def _delete_cache_keys(self) -> list[str]:
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            keys = list(client.scan_iter(f"{self.cache_prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            client.close()
        except Exception as exc:
            return [f"redis {self.cache_prefix}:*: {exc!r}"]
        return []

    def _drop_databases(self) -> list[str]:
        problems = []
        try:
            with self.admin_connect() as conn:
                for name in list(self._created_dbs):
                    try:
                        conn.execute(
                            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                                sql.Identifier(name)
                            )
                        )
                        self._created_dbs.remove(name)
                    except Exception as exc:
                        problems.append(f"drop database {name}: {exc!r}")
        except Exception as exc:
            problems.append(f"drop databases: {exc!r}")
        return problems


class System:
    """exchange_mock, api, relay(s), executors of one topic layout."""

    def __init__(
        self,
        run: BenchRun,
        name: str,
        *,
        topics: int = 4,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.run = run
        self.name = name
        self.topics = topics
        self.prefix = f"{run.topic_base}-{name}"
        self.zk_root = f"{run.zk_base}/{name}"
        if not run.exchange_url:
            run.exchange_url = f"http://127.0.0.1:{free_port()}"
        if not run.exchange_fix_port:
            run.exchange_fix_port = free_port()
        self.exchange_url = run.exchange_url
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "broker.settings.local",
            "DATABASE_URL": run.db_url,
            "KAFKA_BOOTSTRAP_SERVERS": run.kafka,
            "ZOOKEEPER_HOSTS": run.zookeeper,
            "REDIS_URL": run.redis_url,
            "TRADE_TOPIC_PREFIX": self.prefix,
            "TRADE_TOPICS": str(topics),
            "ZOOKEEPER_ROOT": self.zk_root,
            "EXCHANGE_URL": self.exchange_url,
            # The exchange listens for FIX here; the executors connect here.
            "EXCHANGE_FIX_PORT": str(run.exchange_fix_port),
            # Systems share the exchange: each its own FIX sessions.
            "FIX_SENDER_COMP_ID": f"BR-{name}",
            "EXCHANGE_TICK_SECONDS": "0",
            "CACHE_KEY_PREFIX": run.cache_prefix,
            "THROTTLE_CUSTOMER_RATE": UNREACHABLE_RATE,
            "THROTTLE_IP_RATE": UNREACHABLE_RATE,
            "LOG_LEVEL": "INFO",
            **(extra_env or {}),
        }
        self.launcher = AppLauncher(env=self.env, log_dir=run.log_dir / name)
        self.exchange: AppProcess | None = None
        self.api: AppProcess | None = None
        self.relays: list[AppProcess] = []
        self.executors: dict[str, AppProcess] = {}
        self._executor_seq = 0
        self._zk = None
        run.systems.append(self)

    @property
    def session_timeout(self) -> float:
        from django.conf import settings

        return float(
            self.env.get("ZOOKEEPER_SESSION_TIMEOUT")
            or settings.ZOOKEEPER_SESSION_TIMEOUT
        )

    def topic_names(self) -> list[str]:
        return [f"{self.prefix}.{i}" for i in range(self.topics)]

    def topic_of(self, customer_id: int) -> str:
        return f"{self.prefix}.{topic_index(customer_id, self.topics)}"

    def customers_on(self, topic: str) -> list[BenchCustomer]:
        return [c for c in self.run.customers if self.topic_of(c.id) == topic]

    # -- processes -------------------------------------------------------------

    def start_exchange(self) -> AppProcess:
        self.exchange = self.run.ensure_exchange()
        return self.exchange

    def start_api(self) -> AppProcess:
        self.start_exchange()
        if self.api is None or not self.api.alive():
            self.api = self.launcher.start_api(self.api_port)
        return self.api

    def restart_api(self) -> AppProcess:
        if self.api is not None:
            self._stop(self.api)
            self.api = None
        return self.start_api()

    def start_relay(self) -> AppProcess:
        relay = self.launcher.start_relay(name=f"relay-{len(self.relays) + 1}")
        self.relays.append(relay)
        return relay

    def stop_relays(self) -> None:
        for relay in self.relays:
            self._stop(relay)
        self.relays.clear()

    def start_executor(self, name: str | None = None) -> AppProcess:
        """Started, not waited for: see wait_all_led / wait_balanced."""
        self.start_exchange()
        if name is None:
            self._executor_seq += 1
            name = f"executor-{self._executor_seq}"
        process = self.launcher.start_executor(name)
        self.executors[name] = process
        return process

    def live_executors(self) -> dict[str, AppProcess]:
        return {n: p for n, p in self.executors.items() if p.alive()}

    def kill_executor(self, name: str, signum: int = signal.SIGKILL) -> None:
        process = self.executors.pop(name)
        process.signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(10)
        self._forget(process)

    def _stop(self, process: AppProcess) -> None:
        process.stop()
        self._forget(process)

    def _forget(self, process: AppProcess) -> None:
        with contextlib.suppress(ValueError):
            self.launcher.processes.remove(process)

    def stop(self) -> None:
        if self._zk is not None:
            with contextlib.suppress(Exception):
                self._zk.stop()
                self._zk.close()
            self._zk = None
        self.launcher.stop_all()
        self.exchange = self.api = None
        self.relays.clear()
        self.executors.clear()

    def check_alive(self) -> None:
        processes = list(self.launcher.processes)
        if self.exchange is not None:
            processes.append(self.exchange)
        dead = [p for p in processes if not p.alive()]
        if dead:
            lines = "\n".join(
                f"{p.name} exited {p.popen.returncode}; log {p.log_path}:\n"
                f"{p.log_tail(15)}"
                for p in dead
            )
            raise RuntimeError(f"process(es) of {self.name} died:\n{lines}")

    # -- leadership --------------------------------------------------------------

    def leaders(self) -> dict[str, tuple[int, str, object]]:
        """topic → (epoch, holder, elected_at) from broker_topicleader."""
        from broker.models import TopicLeader

        return {
            row.topic: (row.epoch, row.holder, row.elected_at)
            for row in TopicLeader.objects.filter(topic__in=self.topic_names())
        }

    def spread(self) -> dict[str, int]:
        """Live executor → number of topics it leads (0 included)."""
        counts = dict.fromkeys(self.live_executors(), 0)
        for _, holder, _ in self.leaders().values():
            if holder in counts:
                counts[holder] += 1
        return counts

    def all_led(self) -> bool:
        live = set(self.live_executors())
        leaders = self.leaders()
        return len(leaders) == self.topics and all(
            holder in live for _, holder, _ in leaders.values()
        )

    def balanced(self) -> bool:
        live = self.live_executors()
        if not live or not self.all_led():
            return False
        share = -(-self.topics // len(live))
        return max(self.spread().values()) <= share

    def zk(self):
        """The driver's own ZooKeeper client (reads only)."""
        if self._zk is None:
            from kazoo.client import KazooClient

            self._zk = KazooClient(hosts=self.run.zookeeper)
            self._zk.start(timeout=15)
        return self._zk

    def contenders(self, topic: str) -> int:
        """Candidates in the topic's election (the leader included)."""
        from kazoo.exceptions import NoNodeError

        try:
            return len(self.zk().get_children(f"{self.zk_root}/elections/{topic}"))
        except NoNodeError:
            return 0

    def ready_for_failover(self) -> bool:
        """Balanced, and every topic has a successor queued behind its leader."""
        return self.balanced() and all(
            self.contenders(topic) >= 2 for topic in self.topic_names()
        )

    def wait_all_led(self, timeout: float = 90) -> None:
        self.wait(self.all_led, timeout=timeout, what="a live leader for every topic")

    def wait_balanced(self, timeout: float = 120) -> None:
        self.wait(self.balanced, timeout=timeout, what="balanced leadership")

    def wait(self, condition, *, timeout: float, what: str, interval=0.1) -> object:
        def check():
            self.check_alive()
            return condition()

        return wait_until(
            check,
            timeout=timeout,
            interval=interval,
            what=f"{what} ({self.name})",
            progress=lambda elapsed: self.run.progress.update(
                f"waiting for {what} ({elapsed:.0f}s)"
            ),
        )
