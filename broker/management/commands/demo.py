"""``manage.py demo``: run the whole system locally and push real trades through it.

Starts exchange_mock, the api, the relay and three executors as separate processes
(the local stack must already be up: ``make demo`` does that), creates funded demo
customers, places trades for them concurrently over real HTTP, waits until every
trade is terminal and prints a summary. Then it keeps running until Ctrl-C, or
exits with ``--exit`` (status 0 only if every demo trade filled).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlparse

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from broker.models import TopicLeader
from broker.services.customers import customer_create
from broker.stack.apps import AppLauncher, NotReady, wait_until
from broker.topics import all_topics

SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX"]
TERMINAL = {"filled", "rejected", "canceled", "expired"}


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


class Command(BaseCommand):
    help = "Start every role, place demo trades over HTTP, print a summary."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--exit", action="store_true", help="exit after summary")
        parser.add_argument("--customers", type=int, default=6)
        parser.add_argument("--trades-per-customer", type=int, default=5)
        parser.add_argument("--executors", type=int, default=3)
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args, **options) -> None:
        api_port = int(os.environ.get("API_PORT", "8000"))
        exchange_url = settings.EXCHANGE_URL
        exchange = urlparse(exchange_url)
        for name, host, port in [
            ("api", "127.0.0.1", api_port),
            ("exchange_mock", exchange.hostname, exchange.port or 80),
        ]:
            if not _port_free(host, port):
                raise CommandError(
                    f"{name} port {host}:{port} is in use: is another demo running?"
                )

        launcher = AppLauncher(
            env={"DJANGO_SETTINGS_MODULE": "broker.settings.local"},
            log_dir=settings.BASE_DIR / ".stack" / "logs" / "demo",
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            self._start(launcher, exchange_url, api_port, options["executors"])
            api = f"http://127.0.0.1:{api_port}"
            password = self._admin_login()
            trades = self._place_trades(
                api, options["customers"], options["trades_per_customer"]
            )
            final = self._wait_terminal(api, trades, options["timeout"])
            all_filled = self._summary(final)
            self.stdout.write(
                f"\nAPI        {api}/api/v1/  (Bearer tokens above)\n"
                f"Admin      {api}/admin/  login admin / {password}\n"
                f"Exchange   {exchange_url}/orders\n"
                f"Logs       {launcher.log_dir}\n"
            )
            if options["exit"]:
                if not all_filled:
                    raise CommandError("not every demo trade filled")
                return
            self.stdout.write("Running; Ctrl-C to stop.")
            try:
                while not stop.wait(1.0):
                    dead = [p.name for p in launcher.processes if not p.alive()]
                    if dead:
                        raise CommandError(f"process exited: {', '.join(dead)}")
            except KeyboardInterrupt:
                pass
        except NotReady as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self.stdout.write("Stopping demo processes...")
            launcher.stop_all()

    def _start(
        self, launcher: AppLauncher, exchange_url: str, api_port: int, executors: int
    ) -> None:
        self.stdout.write("Starting exchange_mock, relay, executors, api...")
        launcher.start_exchange(
            exchange_url, store=settings.BASE_DIR / ".stack" / "exchange.sqlite3"
        )
        launcher.start_relay()
        for index in range(1, executors + 1):
            launcher.start_executor(f"executor-{index}")
        launcher.start_api(api_port)
        wait_until(
            lambda: (
                TopicLeader.objects.filter(
                    topic__in=all_topics(),
                    holder__in=[f"executor-{i}" for i in range(1, executors + 1)],
                ).count()
                == len(all_topics())
            ),
            timeout=60,
            interval=0.2,
            what="a leader for every topic",
        )

    def _admin_login(self) -> str:
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        return password

    def _place_trades(
        self, api: str, customers: int, per_customer: int
    ) -> list[tuple[str, str]]:
        run = uuid.uuid4().hex[:6]
        tokens = []
        for index in range(customers):
            customer, token = customer_create(
                username=f"demo-{run}-{index + 1}", cash=Decimal("100000.00")
            )
            tokens.append(token)
            self.stdout.write(f"customer {customer.pk}: token {token}")

        def place(job: tuple[int, int]) -> tuple[str, str]:
            customer_index, n = job
            token = tokens[customer_index]
            with requests.Session() as session:
                response = session.post(
                    f"{api}/api/v1/trades",
                    json={
                        "symbol": SYMBOLS[(customer_index + n) % len(SYMBOLS)],
                        "side": "buy",
                        "quantity": str(1 + n),
                        "type": "market",
                    },
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
            if response.status_code != 201:
                raise CommandError(
                    f"placement failed: {response.status_code} {response.text}"
                )
            return token, response.json()["id"]

        jobs = [(c, n) for n in range(per_customer) for c in range(customers)]
        self.stdout.write(f"Placing {len(jobs)} trades concurrently over HTTP...")
        with ThreadPoolExecutor(max_workers=min(16, len(jobs))) as pool:
            return list(pool.map(place, jobs))

    def _wait_terminal(
        self, api: str, trades: list[tuple[str, str]], timeout: float
    ) -> list[dict]:
        session = requests.Session()
        latest: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        pending = list(trades)
        while pending and time.monotonic() < deadline:
            still = []
            for token, trade_id in pending:
                body = session.get(
                    f"{api}/api/v1/trades/{trade_id}",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).json()
                latest[trade_id] = body
                if body["status"] not in TERMINAL:
                    still.append((token, trade_id))
            pending = still
            if pending:
                time.sleep(0.2)  # polling interval of a client, not a wait for state
        return [latest[trade_id] for _, trade_id in trades]

    def _summary(self, trades: list[dict]) -> bool:
        statuses = Counter(t["status"] for t in trades)
        latencies = [
            (
                datetime.fromisoformat(t["filled_at"])
                - datetime.fromisoformat(t["created_at"])
            ).total_seconds()
            * 1000
            for t in trades
            if t["status"] == "filled" and t["filled_at"]
        ]
        self.stdout.write("\n=== Demo summary ===")
        self.stdout.write(f"trades: {len(trades)}")
        for status, count in sorted(statuses.items()):
            self.stdout.write(f"  {status:<12} {count}")
        if latencies:
            self.stdout.write(
                f"place→filled latency: p50 {_percentile(latencies, 50):.1f} ms, "
                f"p99 {_percentile(latencies, 99):.1f} ms, "
                f"mean {statistics.fmean(latencies):.1f} ms"
            )
        self.stdout.write("topic leaders:")
        for leader in TopicLeader.objects.filter(topic__in=all_topics()).order_by(
            "topic"
        ):
            self.stdout.write(
                f"  {leader.topic:<14} {leader.holder:<14} epoch {leader.epoch}"
            )
        return statuses.get("filled", 0) == len(trades)
