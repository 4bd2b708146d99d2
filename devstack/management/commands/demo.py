"""``manage.py demo``: run the whole system locally and push real trades through it.

Starts exchange_mock, the api, the relay and three executors as separate processes
(the local stack must already be up: ``make demo`` does that), creates funded demo
customers, places their trades over real HTTP (concurrent market buys, a limit order
that rests and fills, a canceled order, a partial fill), waits until every trade is
terminal and prints a summary. Then it keeps running until Ctrl-C, or exits with
``--exit`` (status 0 only if every demo trade ended as expected).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import statistics
import threading
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from broker.models import TopicLeader, TradeEvent
from broker.services.customers import customer_create
from broker.topics import all_topics
from devstack import demo
from devstack.launcher import AppLauncher
from devstack.wait import NotReady, wait_until


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
        parser.add_argument("--relays", type=int, default=2)
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
            self._start(
                launcher,
                exchange_url,
                api_port,
                executors=options["executors"],
                relays=options["relays"],
            )
            api_url = f"http://127.0.0.1:{api_port}"
            password = self._admin_login()
            tokens = self._customers(options["customers"])
            trades = demo.run(
                demo.DemoApi(api_url, exchange_url),
                tokens,
                options["trades_per_customer"],
                options["timeout"],
                self.stdout.write,
            )
            all_ok = self._summary(trades)
            self.stdout.write(
                f"\nAPI        {api_url}/api/v1/  (docs: {api_url}/api/docs/)\n"
                f"Admin      {api_url}/admin/  login admin / {password}\n"
                f"Exchange   {exchange_url}/orders\n"
                f"Logs       {launcher.log_dir}\n"
            )
            if options["exit"]:
                if not all_ok:
                    raise CommandError("not every demo trade ended as expected")
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
        self,
        launcher: AppLauncher,
        exchange_url: str,
        api_port: int,
        *,
        executors: int,
        relays: int,
    ) -> None:
        self.stdout.write(
            f"Starting exchange_mock, {relays} relays, {executors} executors, "
            "celery worker and beat, api..."
        )
        launcher.start_exchange(
            exchange_url, store=settings.BASE_DIR / ".stack" / "exchange.sqlite3"
        )
        for index in range(1, relays + 1):
            launcher.start_relay(name=f"relay-{index}")
        launcher.manage("celery-worker", "celery_worker")
        launcher.manage("celery-beat", "celery_beat")
        names = [f"executor-{index}" for index in range(1, executors + 1)]
        for name in names:
            launcher.start_executor(name)
        launcher.start_api(api_port)
        wait_until(
            lambda: (
                TopicLeader.objects.filter(
                    topic__in=all_topics(), holder__in=names
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

    def _customers(self, count: int) -> list[str]:
        run = uuid.uuid4().hex[:6]
        tokens = []
        for index in range(max(count, 3)):
            customer, token = customer_create(
                username=f"demo-{run}-{index + 1}", cash=Decimal("100000.00")
            )
            tokens.append(token)
            self.stdout.write(f"customer {customer.pk}: token {token}")
        return tokens

    def _summary(self, trades: list[demo.DemoTrade]) -> bool:
        statuses = Counter(t.final.get("status") for t in trades)
        market = [t for t in trades if t.label.startswith("market")]
        latencies = [
            (
                datetime.fromisoformat(t.final["filled_at"])
                - datetime.fromisoformat(t.final["created_at"])
            ).total_seconds()
            * 1000
            for t in market
            if t.final.get("filled_at")
        ]
        self.stdout.write("\n=== Demo summary ===")
        self.stdout.write(f"trades: {len(trades)}")
        for status, count in sorted(statuses.items(), key=lambda kv: str(kv[0])):
            self.stdout.write(f"  {status:<16} {count}")
        if latencies:
            self.stdout.write(
                f"market buys place→filled: p50 {_percentile(latencies, 50):.1f} ms, "
                f"p99 {_percentile(latencies, 99):.1f} ms, "
                f"mean {statistics.fmean(latencies):.1f} ms ({len(latencies)} fills)"
            )
        for trade in trades:
            if trade in market:
                continue
            fills = trade.final.get("fills", [])
            path = " → ".join(
                TradeEvent.objects.filter(
                    trade_id=trade.id, kind=TradeEvent.Kind.STATUS
                )
                .order_by("id")
                .values_list("status", flat=True)
            )
            self.stdout.write(
                f"{trade.label}: {trade.final.get('status')} "
                f"({len(fills)} fill{'s' if len(fills) != 1 else ''}; {path})"
                f"{'' if trade.ok else f'  EXPECTED {trade.expected}'}"
            )
        self.stdout.write("topic leaders:")
        for leader in TopicLeader.objects.filter(topic__in=all_topics()).order_by(
            "topic"
        ):
            self.stdout.write(
                f"  {leader.topic:<14} {leader.holder:<14} epoch {leader.epoch}"
            )
        return all(trade.ok for trade in trades)
