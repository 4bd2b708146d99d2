"""``manage.py demo``: run the whole system locally and push real trades through it.

Starts exchange_mock, the relays, Celery worker and beat, three executors and the api
as separate processes (the local stack must already be up: ``make demo`` does that),
creates funded demo customers, places their trades over real HTTP (concurrent market
buys, a limit order that rests and fills, a canceled order, a partial fill), waits
until every trade is terminal and prints a summary. Then it keeps running until
Ctrl-C, or exits with ``--exit`` (status 0 only if every demo trade ended as
expected).

While it runs it supervises its processes: one that exits (``kill -9`` an executor)
is restarted with backoff, and the demo says how it ended, which topics moved to
whom and how long until the next fill. Each child runs in its own session, so the
terminal's Ctrl-C (SIGINT to the whole foreground process group) reaches only the
demo; its handler only counts the signal, and the run loop then stops the children
in order (SIGTERM, a deadline, SIGKILL of the process group) and exits 0 with no
process left behind. A second Ctrl-C skips the grace period.
"""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import threading
import time
import uuid
from collections import Counter
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from broker.models import FixSession, TopicLeader, TradeEvent
from broker.services.customers import customer_create
from broker.topics import all_topics, topic_for_customer
from devstack import demo, procfs
from devstack.failover import FailoverReport
from devstack.launcher import AppLauncher, Stopping
from devstack.paths import stack_dir
from devstack.process import cmdline, port_in_use
from devstack.supervisor import Supervisor
from devstack.wait import NotReady, ProcessExited, wait_until

# The supervising loop's cadence: how soon an exit or a Ctrl-C is acted on.
POLL_SECONDS = 0.2
# Stopped first to last: no new trades, then the executors finish their current
# message, then what feeds them, then the exchange they may still be talking to.
STOP_ORDER = ("api", "executor", ("celery", "relay"), "exchange_mock")
# Each tier's grace after SIGTERM before its process groups are SIGKILLed.
STOP_GRACE_SECONDS = 20.0


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def _holders(port: int) -> str:
    pids = procfs.listening_pids(port)
    return ", ".join(f"pid {pid} ({cmdline(pid)[:60]})" for pid in pids)


class _Workload(threading.Thread):
    """The demo trades, placed and awaited over HTTP off the supervising thread,
    so a process can be restarted while its trades are in flight."""

    def __init__(self, run) -> None:
        super().__init__(name="demo-workload", daemon=True)
        self._run = run
        self.trades: list[demo.DemoTrade] | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.trades = self._run()
        except Exception as exc:  # the supervising loop reports it
            self.error = exc


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
        # The handlers only count: the loop and the waits read the count. (Setting a
        # threading.Event here could deadlock on its lock; printing could re-enter
        # the output buffer mid-write.)
        self._signals: list[int] = []
        self._closing = False
        self._finished = False
        self._output = threading.Lock()
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

        api_port = int(os.environ.get("API_PORT", "8000"))
        exchange_url = settings.EXCHANGE_URL
        exchange = urlparse(exchange_url)
        fix_port = int(os.environ.get("EXCHANGE_FIX_PORT") or 8101)  # 0: any free
        for name, host, port in [
            ("api", "127.0.0.1", api_port),
            ("exchange_mock", exchange.hostname, exchange.port or 80),
            ("exchange_mock FIX", exchange.hostname, fix_port),
        ]:
            if port and port_in_use(host, port):
                holders = _holders(port)
                raise CommandError(
                    f"{name} port {host}:{port} is in use"
                    + (f" by {holders}" if holders else "")
                    + ": is another demo running?"
                )

        launcher = AppLauncher(
            env={"DJANGO_SETTINGS_MODULE": "broker.settings.local"},
            log_dir=stack_dir() / "logs" / "demo",
            stopping=self._stopping,
        )
        report = FailoverReport(topics=all_topics(), say=self._say)
        supervisor = Supervisor(
            launcher,
            say=self._say,
            stop_order=STOP_ORDER,
            on_exit=report.process_exited,
        )
        workload: _Workload | None = None
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
            report.start()
            self._say(
                f"Supervising {len(launcher.processes)} processes (logs in "
                f"{launcher.log_dir}); one that exits is restarted:"
            )
            for process in launcher.processes:
                self._say(f"  {process.name:<14} pid {process.pid}")
            self._say("Try: kill -9 <an executor's pid> while trades are placed.")
            api = demo.DemoApi(api_url, exchange_url, stopping=self._stopping)
            workload = _Workload(
                lambda: demo.run(
                    api,
                    tokens,
                    options["trades_per_customer"],
                    options["timeout"],
                    self._say,
                )
            )
            workload.start()
            self._supervise(
                supervisor, report, workload, options, api_url, exchange_url, password
            )
        except Stopping:
            pass  # interrupted while starting: said and handled below
        except ProcessExited as exc:
            raise CommandError(f"a process exited while starting: {exc}") from exc
        except NotReady as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self._closing = True
            if self._signals:
                name = signal.Signals(self._signals[0]).name
                self._say(f"\n{name}: stopping the demo.")
            self._say("Stopping demo processes...")
            started = time.monotonic()
            outcomes = supervisor.shutdown(
                timeout=STOP_GRACE_SECONDS, hurry=lambda: len(self._signals) > 1
            )
            if len(self._signals) > 1:
                self._say("Interrupted again: killed what was still running.")
            self._say(
                f"Stopped in {time.monotonic() - started:.1f} s: " + ", ".join(outcomes)
            )
            if workload is not None:
                workload.join(timeout=10)
        if self._signals and options["exit"] and not self._finished:
            raise CommandError("interrupted before every demo trade ended")

    def _on_signal(self, signum: int, frame) -> None:
        self._signals.append(signum)

    def _stopping(self) -> bool:
        return bool(self._signals) or self._closing

    def _say(self, message: str) -> None:
        """One line to stdout, flushed (from either thread). Once the demo is
        closing only the main thread speaks: the workload thread, a daemon, must
        not hold the stdout lock while the interpreter exits."""
        if self._closing and threading.current_thread() is not threading.main_thread():
            return
        with self._output:
            self.stdout.write(message)
            self.stdout.flush()

    def _supervise(
        self,
        supervisor: Supervisor,
        report: FailoverReport,
        workload: _Workload,
        options: dict,
        api_url: str,
        exchange_url: str,
        password: str,
    ) -> None:
        """Restart what exits and report failovers until a signal, or (with
        ``--exit``) until the summary."""
        summarised = False
        while not self._signals:
            supervisor.poll()
            report.poll()
            if not summarised and not workload.is_alive():
                summarised = True
                if workload.error is not None:
                    # E.g. the exchange was killed under a quote request: the trades
                    # are lost to the summary, not the system to the user.
                    if options["exit"]:
                        raise CommandError(f"demo trades failed: {workload.error}")
                    self._say(f"demo trades failed: {workload.error}")
                    all_ok = False
                else:
                    all_ok = self._summary(workload.trades or [])
                self._say(
                    f"\nAPI        {api_url}/api/v1/  (docs: {api_url}/api/docs/)\n"
                    f"Admin      {api_url}/admin/  login admin / {password}\n"
                    f"Exchange   {exchange_url}/orders\n"
                    f"Logs       {supervisor.launcher.log_dir}\n"
                )
                if options["exit"]:
                    if not all_ok:
                        raise CommandError("not every demo trade ended as expected")
                    self._finished = True
                    return
                self._say("Running; Ctrl-C to stop.")
            time.sleep(POLL_SECONDS)

    def _start(
        self,
        launcher: AppLauncher,
        exchange_url: str,
        api_port: int,
        *,
        executors: int,
        relays: int,
    ) -> None:
        self._say(
            f"Starting exchange_mock, {relays} relays, {executors} executors, "
            "celery worker and beat, api..."
        )
        launcher.start_exchange(exchange_url, store=stack_dir() / "exchange.sqlite3")
        for index in range(1, relays + 1):
            launcher.start_relay(name=f"relay-{index}")
        launcher.manage("celery-worker", "celery_worker")
        launcher.manage("celery-beat", "celery_beat")
        names = [f"executor-{index}" for index in range(1, executors + 1)]
        since = timezone.now()  # leaders of an earlier demo do not count
        for name in names:
            launcher.start_executor(name)
        launcher.start_api(api_port)

        def all_led() -> bool:
            if self._stopping():
                raise Stopping("stopped while waiting for the elections")
            dead = [p for p in launcher.processes if not p.alive()]
            if dead:
                raise ProcessExited(
                    "; ".join(
                        f"{p.name} exited with {p.popen.returncode}; log "
                        f"{p.log_path}:\n{p.log_tail()}"
                        for p in dead
                    )
                )
            led = TopicLeader.objects.filter(
                topic__in=all_topics(), holder__in=names, elected_at__gte=since
            )
            return led.count() == len(all_topics())

        wait_until(all_led, timeout=60, interval=0.2, what="a leader for every topic")

    def _admin_login(self) -> str:
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = True
        # Random, so it passes; validated like every password the project sets.
        validate_password(password, user)
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
            self._say(
                f"customer {customer.pk} ({topic_for_customer(customer.pk)}): "
                f"token {token}"
            )
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
        self._say("\n=== Demo summary ===")
        self._say(f"trades: {len(trades)}")
        for status, count in sorted(statuses.items(), key=lambda kv: str(kv[0])):
            self._say(f"  {status:<16} {count}")
        if latencies:
            self._say(
                f"{len(market)}-trade burst of market buys, place→filled: "
                f"p50 {_percentile(latencies, 50):.1f} ms, "
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
            self._say(
                f"{trade.label}: {trade.final.get('status')} "
                f"({len(fills)} fill{'s' if len(fills) != 1 else ''}; {path})"
                f"{'' if trade.ok else f'  EXPECTED {trade.expected}'}"
            )
        self._say("topics: leader (epoch) · FIX session (next out / next in)")
        leaders = {
            leader.topic: leader
            for leader in TopicLeader.objects.filter(topic__in=all_topics())
        }
        sessions = {
            session.topic: session
            for session in FixSession.objects.filter(topic__in=all_topics())
        }
        for topic in all_topics():
            leader, session = leaders.get(topic), sessions.get(topic)
            led = f"{leader.holder} ({leader.epoch})" if leader else "no leader"
            fix = (
                f"{session.sender_comp_id} {session.next_out_seq} / "
                f"{session.next_in_seq}"
                if session
                else "no session yet"
            )
            self._say(f"  {topic}: {led} · {fix}")
        return all(trade.ok for trade in trades)
