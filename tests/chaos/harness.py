"""The chaos harness: the real stack (PostgreSQL, Kafka, ZooKeeper, Redis) and the
project's real processes (api, relays, three executors, exchange_mock on a SQLite
store) per scenario; a seeded workload over HTTP; convergence with deadlines; and
the invariant checks, read from PostgreSQL, the exchange's own records and Kafka.

A scenario injects its fault while the workload runs, heals, then calls
``ChaosSystem.converge()`` and ``ChaosSystem.check()``; ``check`` returns the list
of violations (empty when every invariant held)."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from django.conf import settings
from django.db import close_old_connections, connection
from django.test import override_settings

from broker.audit import ledger_discrepancies
from broker.events import Event, UndecodableEvent
from broker.models import (
    Account,
    Customer,
    DeadLetter,
    Execution,
    FixSession,
    LedgerEntry,
    OutboxEvent,
    Position,
    TopicLeader,
    Trade,
    TradeEvent,
)
from broker.services.cancellation import trade_request_reconcile
from broker.services.customers import customer_create
from broker.services.transitions import TERMINAL
from devstack.launcher import AppLauncher, AppProcess, free_port
from devstack.wait import wait_until
from exchange_mock.admin import admin_headers
from executor.fix.codec import Framer, Message, MsgType, Tag, encode
from tests.integration.conftest import database_url
from tests.stack_cleanup import drop_topics_and_znodes

FULL = os.environ.get("CHAOS_FULL") == "1"
EXECUTORS = ("executor-1", "executor-2", "executor-3")
SYMBOLS = ("AAPL", "MSFT", "NVDA")
CENT = Decimal("0.01")
# Seconds a leader's ZooKeeper session lives without heartbeats (SIGSTOP/SIGKILL).
SESSION_TIMEOUT = 4.0
_run_id = uuid.uuid4().hex[:6]
_scenario_seq = itertools.count(1)

# Exchange status -> the trade status it must end in.
_EXCHANGE_TERMINAL = {
    "filled": "filled",
    "canceled": "canceled",
    "expired": "expired",
    "rejected": "rejected",
}


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


# --- accepted trades -------------------------------------------------------------


@dataclass
class Accepted:
    """What the API answered 201 to: the promise the system must keep."""

    trade_id: str
    customer_id: int
    kind: str


@dataclass
class Client:
    customer: Customer
    token: str
    topic: str
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.session.headers["Authorization"] = f"Bearer {self.token}"


# --- the running system ------------------------------------------------------------


class ChaosSystem:
    """One scenario's processes, topics, ZooKeeper subtree and exchange store."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        *,
        store: Path,
        relays: int = 2,
        session_timeout: float = SESSION_TIMEOUT,
    ) -> None:
        n = next(_scenario_seq)
        self.name = name
        self.session_timeout = session_timeout
        self.prefix = f"chaos-{_run_id}-{n}.trades"
        self.zk_root = f"/broker-chaos-{_run_id}-{n}"
        self.topics = [f"{self.prefix}.{i}" for i in range(settings.TRADE_TOPICS)]
        self.dlq = f"{self.prefix}.dlq"
        # The exchange store is shared by the run: each scenario its own FIX
        # sessions (SenderCompID <comp>-<n> for topic <prefix>.<n>).
        self.fix_comp_id = f"CH{_run_id}-{n}"
        self.fix_sessions = [
            f"{self.fix_comp_id}-{i}" for i in range(settings.TRADE_TOPICS)
        ]
        self.fix_port = free_port()
        self.exchange_url = f"http://127.0.0.1:{free_port()}"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        # One exchange store for the whole run (each scenario restarts the exchange
        # on it): exec ids and order ids keep growing, as at a real venue, so
        # scenarios sharing the test database never reuse one. Sessions (topic
        # names) are per scenario.
        self.exchange_store = store
        self.launcher = AppLauncher(
            env={
                "DJANGO_SETTINGS_MODULE": "broker.settings.local",
                "DATABASE_URL": database_url(),
                "TRADE_TOPIC_PREFIX": self.prefix,
                "TRADE_TOPICS": str(settings.TRADE_TOPICS),
                "ZOOKEEPER_ROOT": self.zk_root,
                "ZOOKEEPER_HOSTS": settings.ZOOKEEPER_HOSTS,
                "ZOOKEEPER_SESSION_TIMEOUT": str(session_timeout),
                "KAFKA_BOOTSTRAP_SERVERS": settings.KAFKA_BOOTSTRAP_SERVERS,
                "EXCHANGE_URL": self.exchange_url,
                # The exchange listens for FIX here; the executors connect here.
                "EXCHANGE_FIX_PORT": str(self.fix_port),
                "FIX_SENDER_COMP_ID": self.fix_comp_id,
                # Short: a silent connection is found out within seconds.
                "FIX_HEARTBEAT_SECONDS": "2",
                "EXCHANGE_TICK_SECONDS": "0",
                "EXCHANGE_TIMEOUT": "3",
                "RELAY_POLL_SECONDS": "0.5",
                "WEB_CONCURRENCY": "1",
                "API_THREADS": "16",
                "CACHE_KEY_PREFIX": f"chaos-{_run_id}-{n}",
                "THROTTLE_CUSTOMER_RATE": "100000/minute",
                "THROTTLE_IP_RATE": "100000/minute",
            },
            log_dir=log_dir,
        )
        self.relays: list[AppProcess] = []
        self.executors: dict[str, AppProcess] = {}
        self.relay_count = relays
        self.accepted: list[Accepted] = []
        self._accepted_lock = threading.Lock()
        self.clients: list[Client] = []
        self.faults = 0
        self.notes: list[str] = []
        self.extra_violations: list[str] = []
        # Trades left open for review by a quarantined report (set by check()).
        self.quarantined: set[str] = set()
        self.leader_history: dict[str, list[tuple[int, datetime, str]]] = defaultdict(
            list
        )
        self._watch_stop = threading.Event()
        self._watch: threading.Thread | None = None
        self._settings = override_settings(
            TRADE_TOPIC_PREFIX=self.prefix, ZOOKEEPER_ROOT=self.zk_root
        )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._settings.enable()
        self.launcher.start_exchange(self.exchange_url, store=self.exchange_store)
        self.launcher.start_api(self.api_port)  # waits; others start meanwhile
        for _ in range(self.relay_count):
            self.start_relay()
        for name in EXECUTORS:
            self.start_executor(name)
        self.wait_all_led()
        self._watch = threading.Thread(target=self._watch_leaders, daemon=True)
        self._watch.start()

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watch is not None:
            self._watch.join(5)
        try:
            self.launcher.stop_all()
        finally:
            self._drop_topics_and_znodes()
            self._settings.disable()

    def start_relay(self) -> AppProcess:
        process = self.launcher.start_relay(f"relay-{len(self.relays) + 1}")
        self.relays.append(process)
        return process

    def start_executor(self, name: str) -> AppProcess:
        old = self.executors.get(name)
        if old is not None and old in self.launcher.processes:
            old.stop()
            self.launcher.processes.remove(old)
        process = self.launcher.start_executor(name)
        self.executors[name] = process
        return process

    def restart_relay(self, process: AppProcess) -> AppProcess:
        process.stop(timeout=5)
        self.launcher.processes.remove(process)
        new = self.launcher.start(process.name, process.popen.args)
        self.relays[self.relays.index(process)] = new
        return new

    def _drop_topics_and_znodes(self) -> None:
        drop_topics_and_znodes([*self.topics, self.dlq], self.zk_root)

    # -- leadership -----------------------------------------------------------------

    def leaders(self) -> dict[str, TopicLeader]:
        close_old_connections()
        return {t.topic: t for t in TopicLeader.objects.filter(topic__in=self.topics)}

    def wait_all_led(self, *, by: Iterable[str] | None = None, timeout=60) -> None:
        allowed = set(by or EXECUTORS)

        def led() -> bool:
            leaders = self.leaders()
            return len(leaders) == len(self.topics) and all(
                leader.holder in allowed for leader in leaders.values()
            )

        wait_until(led, timeout=timeout, interval=0.1, what="a leader for each topic")

    def leader_of(self, topic: str) -> TopicLeader:
        return self.leaders()[topic]

    def wait_new_leader(self, topic: str, *, above: int, timeout=45) -> TopicLeader:
        def claimed() -> TopicLeader | None:
            leader = self.leaders().get(topic)
            return leader if leader and leader.epoch > above else None

        return wait_until(
            claimed, timeout=timeout, interval=0.05, what=f"a new leader of {topic}"
        )

    def _watch_leaders(self) -> None:
        """Record every (epoch, elected_at, holder) each topic had: the history the
        stale-epoch check compares every epoch-stamped write with."""
        try:
            while not self._watch_stop.wait(0.05):
                try:
                    for leader in self.leaders().values():
                        history = self.leader_history[leader.topic]
                        if not history or history[-1][0] != leader.epoch:
                            history.append(
                                (leader.epoch, leader.elected_at, leader.holder)
                            )
                except Exception:  # PostgreSQL restarts: keep watching
                    with contextlib.suppress(Exception):
                        connection.close()
        finally:
            connection.close()

    # -- faults ----------------------------------------------------------------------

    def fault(self, what: str) -> None:
        self.faults += 1
        self.notes.append(f"{time.strftime('%H:%M:%S')} fault: {what}")

    def exchange_faults(self, **config) -> None:
        response = requests.post(
            f"{self.exchange_url}/admin/faults",
            json=config,
            headers=admin_headers(),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        if config:
            self.fault(f"exchange {config}")

    def exchange_fault_counters(self) -> dict:
        return requests.get(
            f"{self.exchange_url}/admin/faults", headers=admin_headers(), timeout=10
        ).json()["counters"]

    def set_quote(self, symbol: str, **body) -> None:
        response = requests.post(
            f"{self.exchange_url}/admin/quotes/{symbol}",
            json=body,
            headers=admin_headers(),
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def exchange_orders(self) -> list[dict]:
        """This scenario's orders (its FIX sessions are its own)."""
        orders = requests.get(f"{self.exchange_url}/orders", timeout=30).json()
        return [o for o in orders["orders"] if o["session_id"] in self.fix_sessions]

    def fix_session_of(self, topic: str) -> str:
        return self.fix_sessions[self.topics.index(topic)]

    def fix_logon_answer(self, topic: str, epoch: int) -> str:
        """Log on to ``topic``'s FIX session as a leader of ``epoch`` would (a
        deposed one waking up), and return the exchange's answer: its MsgType and
        Text (``5: stale epoch ...`` is a refusal)."""
        sender = self.fix_session_of(topic)
        logon = encode(
            msg_type=MsgType.LOGON,
            sender=sender,
            target="EXCHANGE",
            seq=10**9,  # never processed: the epoch is checked first
            body=[
                (Tag.ENCRYPT_METHOD, 0),
                (Tag.HEART_BT_INT, 30),
                (Tag.RAW_DATA_LENGTH, len(f"epoch={epoch}")),
                (Tag.RAW_DATA, f"epoch={epoch}"),
            ],
        )
        framer = Framer()
        with socket.create_connection(("127.0.0.1", self.fix_port), timeout=10) as sock:
            sock.sendall(logon)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    return "closed without an answer"
                for item in framer.feed(data):
                    if isinstance(item, Message):
                        return f"{item.msg_type}: {item.get(Tag.TEXT) or ''}"
        return "no answer"

    def exchange_fix_sessions(self) -> dict[str, dict]:
        """The exchange's numbers of this scenario's FIX sessions."""
        sessions = requests.get(f"{self.exchange_url}/fix/sessions", timeout=10)
        return {
            s["session_id"]: s
            for s in sessions.json()["sessions"]
            if s["session_id"] in self.fix_sessions
        }

    def executor_named(self, holder: str) -> AppProcess:
        return self.executors[holder]

    # -- customers and load ----------------------------------------------------------

    def topic_for(self, customer_id: int) -> str:
        from broker.topics import topic_for_customer

        return topic_for_customer(customer_id)

    def new_client(self, *, topic: str | None = None, cash="1000000.00") -> Client:
        close_old_connections()
        for _ in range(400):
            customer, token = customer_create(
                username=f"chaos-{uuid.uuid4().hex[:12]}", cash=Decimal(cash)
            )
            if topic is None or self.topic_for(customer.pk) == topic:
                client = Client(customer, token, self.topic_for(customer.pk))
                self.clients.append(client)
                return client
        raise AssertionError(f"no customer hashed to {topic}")

    def clients_for(self, count: int, *, topic: str | None = None) -> list[Client]:
        return [self.new_client(topic=topic) for _ in range(count)]

    def record(self, client: Client, body: dict, kind: str) -> None:
        with self._accepted_lock:
            self.accepted.append(Accepted(body["id"], client.customer.pk, kind))

    def place(
        self,
        client: Client,
        *,
        symbol="AAPL",
        side="buy",
        quantity="1",
        type="market",
        limit_price: str | None = None,
        time_in_force="day",
        timeout=15,
    ) -> dict | None:
        """Place over HTTP; the body on 201 (recorded as accepted), else None."""
        order = {
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "type": type,
            "time_in_force": time_in_force,
        }
        if limit_price is not None:
            order["limit_price"] = limit_price
        try:
            response = client.session.post(
                f"{self.api_url}/api/v1/trades", json=order, timeout=timeout
            )
        except requests.RequestException:
            return None
        if response.status_code != 201:
            return None
        body = response.json()
        self.record(client, body, f"{type}-{side}")
        return body

    def cancel(self, client: Client, trade_id: str) -> int:
        try:
            return client.session.post(
                f"{self.api_url}/api/v1/trades/{trade_id}/cancel", timeout=15
            ).status_code
        except requests.RequestException:
            return 0

    def trade_status(self, trade_id: str) -> str | None:
        close_old_connections()
        return (
            Trade.objects.filter(id=trade_id).values_list("status", flat=True).first()
        )

    def wait_status(self, trade_id: str, statuses: set[str], timeout=30) -> str:
        return wait_until(
            lambda: (s := self.trade_status(trade_id)) in statuses and s,
            timeout=timeout,
            interval=0.02,
            what=f"trade {trade_id} in {statuses}",
        )

    def workload(self, clients: list[Client], *, ops: int, seed: int) -> Workload:
        return Workload(self, clients, ops=ops, seed=seed)

    # -- convergence -----------------------------------------------------------------

    def quiesce(self, timeout: float = 45) -> None:
        """Wait until nothing is in flight: outbox published, no trade waiting for
        the executor (to be sent, to be canceled, or a market order waiting for
        its answer), and every FIX session booked up to the exchange's last
        message (so no leader is inside a transaction because of old work)."""
        from django.db.models import Q

        waiting = Q(status__in=["accepted", "pending_cancel"]) | Q(
            status="submitted", type="market"
        )

        watermarks = Consumer(
            {
                "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
                "group.id": f"chaos-quiesce-{uuid.uuid4().hex}",
            }
        )

        def offsets_caught_up() -> bool:
            """Every leader stored the offset past its topic's last message: a
            message whose effect the report feed booked first may still be in its
            leader's retry (after a PostgreSQL restart) when the trades look done."""
            stored = dict(
                connection.cursor()
                .execute(
                    "SELECT topic, next_offset FROM broker_consumeroffset "
                    "WHERE topic = ANY(%s) AND partition = 0",
                    [self.topics],
                )
                .fetchall()
            )
            for topic in self.topics:
                _, high = watermarks.get_watermark_offsets(
                    TopicPartition(topic, 0), timeout=10
                )
                if stored.get(topic, 0) < high:
                    return False
            return True

        def quiet() -> bool:
            if self.outbox_backlog():
                return False
            if self._our_trades().filter(waiting).exists():
                return False
            if not offsets_caught_up():
                return False
            return self.fix_caught_up()

        try:
            wait_until(quiet, timeout=timeout, interval=0.2, what="a quiet system")
        finally:
            watermarks.close()

    def fix_caught_up(self) -> bool:
        """Every report the exchange made is sent, and every message it sent is
        booked (our expected number is past its last)."""
        ours = dict(
            FixSession.objects.filter(sender_comp_id__in=self.fix_sessions).values_list(
                "sender_comp_id", "next_in_seq"
            )
        )
        for session, theirs in self.exchange_fix_sessions().items():
            if theirs["feed_cursor"] < theirs["feed_last_seq"]:
                return False
            if ours.get(session, 1) < theirs["next_out"]:
                return False
        return True

    def _our_trades(self):
        return Trade.objects.filter(
            account__customer_id__in=[c.customer.pk for c in self.clients]
        )

    def outbox_backlog(self) -> int:
        close_old_connections()
        return OutboxEvent.objects.filter(
            topic__in=self.topics, published_at__isnull=True
        ).count()

    def converge(self, *, timeout: float = 90) -> None:
        """Wait (with deadlines) until the backlog drained and every trade of the
        scenario's customers is terminal. Resting orders are canceled by their
        customer (a normal action); trades still open after that get a reconcile
        request, as operations or the stuck-trade job would send."""
        deadline = time.monotonic() + timeout
        by_customer = {c.customer.pk: c for c in self.clients}

        def open_trades() -> list[Trade]:
            close_old_connections()
            return list(self._our_trades().exclude(status__in=TERMINAL))

        def settled() -> bool:
            return self.outbox_backlog() == 0 and not any(
                t.status == "accepted" for t in open_trades()
            )

        with contextlib.suppress(Exception):
            wait_until(
                settled,
                timeout=max(1, min(45, deadline - time.monotonic())),
                interval=0.2,
                what="backlog drained",
            )
        # Let in-flight answers and feed reports land before judging.
        with contextlib.suppress(Exception):
            wait_until(
                lambda: all(t.type == "limit" for t in open_trades()),
                timeout=max(1, min(10, deadline - time.monotonic())),
                interval=0.2,
                what="market trades terminal",
            )
        stuck_market = [t for t in open_trades() if t.type == "market"]
        if stuck_market:
            self.notes.append(
                f"{len(stuck_market)} market trades still open after the backlog "
                f"drained: {[(str(t.id), t.status) for t in stuck_market[:5]]}"
            )
        for trade in open_trades():
            client = by_customer[trade.account.customer_id]
            if trade.status not in ("pending_cancel", "accepted"):
                self.cancel(client, str(trade.id))
        reconciled = False
        while True:
            remaining = open_trades()
            if not remaining:
                return
            now = time.monotonic()
            if not reconciled and deadline - now < timeout / 2:
                reconciled = True
                for trade in remaining:
                    trade_request_reconcile(trade=trade, requested_by="chaos")
                self.notes.append(f"reconcile requested for {len(remaining)} trades")
            if now > deadline:
                return  # check() reports what is not terminal
            time.sleep(0.25)

    # -- checks ----------------------------------------------------------------------

    def check(self) -> list[str]:
        close_old_connections()
        violations: list[str] = list(self.extra_violations)
        customer_ids = [c.customer.pk for c in self.clients]
        trades = {str(t.id): t for t in self._our_trades().select_related("account")}
        # A report that failed the trust checks leaves its trade open for review
        # (invariant 7: terminal, or quarantined); such trades are checked by
        # quarantine_check() instead of against the exchange's (distrusted) word.
        self.quarantined = {tid for tid, t in trades.items() if t.review_reason}

        # 1. Nothing accepted was lost, and everything converged.
        for accepted in self.accepted:
            trade = trades.get(accepted.trade_id)
            if trade is None:
                violations.append(f"lost: 201 for {accepted.trade_id} but no trade row")
        for trade in trades.values():
            if trade.status not in TERMINAL and str(trade.id) not in self.quarantined:
                violations.append(f"not terminal: trade {trade.id} is {trade.status}")

        # 2. The exchange: each client_order_id accepted once; fills = executions.
        orders = self.exchange_orders()
        seen: dict[str, int] = defaultdict(int)
        for order in orders:
            seen[order["client_order_id"]] += 1
        for cid, count in seen.items():
            if count > 1:
                violations.append(f"exchange holds {count} orders for {cid}")
        by_cid = {o["client_order_id"]: o for o in orders}
        fills: dict[str, dict[str, Decimal]] = defaultdict(dict)
        for execution in Execution.objects.filter(trade_id__in=list(trades)):
            fills[str(execution.trade_id)][execution.exec_id] = execution.quantity
        exchange_exec_count = 0
        for trade_id, trade in trades.items():
            order = by_cid.get(trade_id)
            theirs = (
                {e["exec_id"]: Decimal(e["quantity"]) for e in order["executions"]}
                if order
                else {}
            )
            ours = fills.get(trade_id, {})
            if trade_id in self.quarantined:
                exchange_exec_count += len(ours)
                if not set(ours) <= set(theirs):
                    violations.append(f"quarantined {trade_id} booked {ours}")
                continue
            exchange_exec_count += len(theirs)
            if ours != theirs:
                violations.append(
                    f"fills of {trade_id} ({trade.status}) {ours} != exchange "
                    f"{theirs} ({order['status'] if order else 'no order'})"
                )
            if order and trade.status in TERMINAL:
                expected = _EXCHANGE_TERMINAL.get(order["status"])
                if expected is None:
                    violations.append(
                        f"trade {trade_id} is {trade.status} but its order is still "
                        f"{order['status']} at the exchange"
                    )
                elif expected != trade.status:
                    violations.append(
                        f"trade {trade_id} is {trade.status}, exchange says "
                        f"{order['status']}"
                    )
            if trade.filled_quantity != sum(ours.values(), Decimal(0)):
                violations.append(
                    f"trade {trade_id} filled_quantity {trade.filled_quantity} != "
                    f"sum of its fills"
                )
        # Orders at the exchange that no trade of ours explains (another session's
        # orders never appear: the exchange is per scenario).
        for cid in seen:
            if cid not in trades:
                violations.append(f"exchange order {cid} matches no trade")

        # 3. No execution applied twice.
        ours_count = Execution.objects.filter(trade_id__in=list(trades)).count()
        distinct = (
            Execution.objects.filter(trade_id__in=list(trades))
            .values("exec_id")
            .distinct()
            .count()
        )
        if ours_count != distinct or ours_count != exchange_exec_count:
            violations.append(
                f"executions: {ours_count} rows, {distinct} distinct exec ids, "
                f"{exchange_exec_count} at the exchange"
            )

        # 4. No write with a stale epoch (recorded leader history, 1 s tolerance for
        # a legitimate transaction that passed its FOR SHARE check just before a
        # successor's claim computed elected_at).
        violations.extend(self._stale_epoch_writes(trades))

        # 5. Per-customer order on Kafka, and every message consumed.
        violations.extend(self._kafka_order())

        # 6. Money conserved, never negative, nothing left held.
        for line in ledger_discrepancies(account_ids=self._account_ids()):
            violations.append(f"ledger: {line}")
        violations.extend(self._money(customer_ids, trades))
        return violations

    def _account_ids(self) -> list[int]:
        return list(
            Account.objects.filter(
                customer_id__in=[c.customer.pk for c in self.clients]
            ).values_list("id", flat=True)
        )

    def _stale_epoch_writes(self, trades: dict[str, Trade]) -> list[str]:
        found = []
        topic_of_trade = {
            tid: self.topic_for(t.account.customer_id) for tid, t in trades.items()
        }
        history = {t: list(h) for t, h in self.leader_history.items()}
        for topic, leader in self.leaders().items():  # the final state too
            h = history.setdefault(topic, [])
            if not h or h[-1][0] != leader.epoch:
                h.append((leader.epoch, leader.elected_at, leader.holder))
        slack = timedelta(seconds=1)
        events = TradeEvent.objects.filter(
            trade_id__in=list(trades), epoch__isnull=False
        ).values_list("trade_id", "epoch", "created_at", "kind")
        for trade_id, epoch, created_at, kind in events:
            topic = topic_of_trade[str(trade_id)]
            newer = [(e, at) for e, at, _ in history.get(topic, []) if e > epoch]
            if any(at + slack < created_at for _, at in newer):
                found.append(
                    f"stale write: {kind} event of {trade_id} with epoch {epoch} "
                    f"at {created_at:%H:%M:%S.%f} after a newer leader of {topic}"
                )
        for letter in DeadLetter.objects.filter(topic__in=self.topics):
            newer = [
                at for e, at, _ in history.get(letter.topic, []) if e > letter.epoch
            ]
            if any(at + slack < letter.created_at for at in newer):
                found.append(f"stale dead letter {letter} epoch {letter.epoch}")
        return found

    def read_topic(self, topic: str) -> list:
        """Every message of ``topic`` (partition 0) from offset 0 to its end."""
        consumer = Consumer(
            {
                "bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS,
                "group.id": f"chaos-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        try:
            _, high = consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=10
            )
            consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
            messages = []
            deadline = time.monotonic() + 60
            while len(messages) < high and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    messages.append(message)
            return messages
        finally:
            consumer.close()

    def _kafka_order(self) -> list[str]:
        found = []
        our_ids = set(
            OutboxEvent.objects.filter(topic__in=self.topics).values_list(
                "id", flat=True
            )
        )
        on_kafka: set[int] = set()
        offsets = dict(
            ((t, p), o)
            for t, p, o in connection.cursor()
            .execute(
                "SELECT topic, partition, next_offset FROM broker_consumeroffset "
                "WHERE topic = ANY(%s)",
                [self.topics],
            )
            .fetchall()
        )
        for topic in self.topics:
            messages = self.read_topic(topic)
            last: dict[bytes, int] = {}
            first_seen: set[int] = set()
            for message in messages:
                try:
                    event = Event.decode(message.value())
                except UndecodableEvent:
                    continue
                on_kafka.add(event.event_id)
                if event.event_id in first_seen:
                    continue
                first_seen.add(event.event_id)
                key = message.key() or b""
                if key in last and event.event_id < last[key]:
                    found.append(
                        f"order: {topic} key {key.decode()} event {event.event_id} "
                        f"first published after event {last[key]}"
                    )
                last[key] = max(last.get(key, 0), event.event_id)
            if messages and offsets.get((topic, 0), 0) < len(messages):
                found.append(
                    f"{topic}: stored offset {offsets.get((topic, 0))} but "
                    f"{len(messages)} messages"
                )
        missing = our_ids - on_kafka
        if missing:
            found.append(f"outbox events never on Kafka: {sorted(missing)[:10]}")
        return found

    def _money(self, customer_ids: list[int], trades: dict[str, Trade]) -> list[str]:
        found = []
        deposits = defaultdict(Decimal)
        for account_id, amount in LedgerEntry.objects.filter(
            account__customer_id__in=customer_ids,
            kind__in=["deposit", "adjustment"],
            bucket="cash",
        ).values_list("account_id", "amount"):
            deposits[account_id] += amount
        expected_cash = dict(deposits)
        expected_qty: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
        values: dict[str, Decimal] = defaultdict(Decimal)
        for execution in Execution.objects.filter(trade_id__in=list(trades)):
            values[str(execution.trade_id)] += execution.quantity * execution.price
        for execution in Execution.objects.filter(trade_id__in=list(trades)):
            trade = trades[str(execution.trade_id)]
            sign = 1 if trade.side == "buy" else -1
            expected_qty[(trade.account_id, trade.symbol)] += sign * execution.quantity
        for trade_id, value in values.items():
            trade = trades[trade_id]
            sign = -1 if trade.side == "buy" else 1
            expected_cash[trade.account_id] = expected_cash.get(
                trade.account_id, Decimal(0)
            ) + sign * _cents(value)
        held_for_review = {
            t.account_id for tid, t in trades.items() if tid in self.quarantined
        }
        for account in Account.objects.filter(customer_id__in=customer_ids):
            if account.cash < 0 or (
                account.reserved_cash != 0 and account.id not in held_for_review
            ):
                found.append(
                    f"account {account.id}: cash {account.cash} reserved "
                    f"{account.reserved_cash} once everything is terminal"
                )
            if account.cash != expected_cash.get(account.id, Decimal(0)):
                found.append(
                    f"account {account.id}: cash {account.cash} != deposits - buys + "
                    f"sells {expected_cash.get(account.id)}"
                )
        for position in Position.objects.filter(account__customer_id__in=customer_ids):
            if position.quantity < 0 or (
                position.reserved_quantity != 0
                and position.account_id not in held_for_review
            ):
                found.append(
                    f"position {position}: reserved {position.reserved_quantity}"
                )
            want = expected_qty.get((position.account_id, position.symbol), Decimal(0))
            if position.quantity - want != _shares_deposited(position):
                found.append(f"position {position}: expected {want} from fills")
        return found

    # -- report ------------------------------------------------------------------------

    def report(self, number: int, label: str, violations: list[str], results: Path):
        line = (
            f"scenario={number}:{label} trades={len(self.accepted)} "
            f"faults={self.faults} violations={len(violations)}"
        )
        print(f"\n{line}")
        with results.open("a") as handle:
            handle.write(line + "\n")
        return line

    def log_tail(self, name: str, lines: int = 40) -> str:
        process = next(
            (p for p in self.launcher.processes if p.name == name), None
        ) or self.executors.get(name)
        return process.log_tail(lines) if process else ""

    def logs(self, name: str) -> str:
        path = self.launcher.log_dir / f"{name}.log"
        return path.read_text() if path.exists() else ""


def _shares_deposited(position: Position) -> Decimal:
    return sum(
        LedgerEntry.objects.filter(
            account_id=position.account_id,
            asset=position.symbol,
            bucket="position",
            kind__in=["deposit", "adjustment"],
        ).values_list("amount", flat=True),
        Decimal(0),
    )


# --- the workload --------------------------------------------------------------------


class Workload:
    """A seeded mix per customer: market buys, limit buys that rest (some canceled,
    some filled later by a price dip), and sells of shares already bought. Each
    customer runs its operations in order on its own thread."""

    def __init__(
        self, system: ChaosSystem, clients: list[Client], *, ops: int, seed: int
    ) -> None:
        self.system = system
        self.clients = clients
        self.ops = ops
        self.seed = seed
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []
        self.done_ops = 0

    def start(self) -> Workload:
        for index, client in enumerate(self.clients):
            thread = threading.Thread(
                target=self._run, args=(client, random.Random(self.seed * 1000 + index))
            )
            thread.start()
            self._threads.append(thread)
        return self

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.stop.set()
        for thread in self._threads:
            thread.join(10)
        # A harness failure must fail the scenario, not pass unnoticed.
        self.system.extra_violations.extend(
            f"workload error: {error}" for error in self.errors
        )
        self.errors.clear()

    def wait_ops(self, count: int, timeout: float = 30) -> None:
        wait_until(
            lambda: self.done_ops >= count or not self.running,
            timeout=timeout,
            interval=0.05,
            what=f"{count} workload operations",
        )

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _run(self, client: Client, rng: random.Random) -> None:
        try:
            resting: list[str] = []
            bought: dict[str, int] = defaultdict(int)
            for _ in range(self.ops):
                if self.stop.is_set():
                    return
                symbol = rng.choice(SYMBOLS)
                roll = rng.random()
                if roll < 0.45:
                    quantity = rng.randint(1, 3)
                    if self.system.place(client, symbol=symbol, quantity=str(quantity)):
                        bought[symbol] += quantity
                elif roll < 0.65:
                    body = self.system.place(
                        client,
                        symbol=symbol,
                        quantity=str(rng.randint(1, 2)),
                        type="limit",
                        limit_price=str(rng.choice([50, 60, 70])),
                        time_in_force=rng.choice(["day", "gtc"]),
                    )
                    if body:
                        resting.append(body["id"])
                elif roll < 0.8 and resting:
                    trade_id = resting.pop(rng.randrange(len(resting)))
                    # Half the cancels race the executor (the trade may still be
                    # accepted); the others wait until it reached the exchange.
                    if rng.random() < 0.5:
                        with contextlib.suppress(Exception):
                            self.system.wait_status(
                                trade_id, {"submitted", *TERMINAL}, timeout=10
                            )
                    self.system.cancel(client, trade_id)
                elif bought:
                    symbol = rng.choice(sorted(bought))
                    self.system.place(client, symbol=symbol, side="sell", quantity="1")
                    bought[symbol] = max(0, bought[symbol] - 1)
                    if not bought[symbol]:
                        del bought[symbol]
                self.done_ops += 1
                time.sleep(rng.uniform(0.0, 0.05))
        except Exception as exc:  # a harness bug must show, not hang
            self.errors.append(repr(exc))
        finally:
            close_old_connections()
            connection.close()


def price_dip(system: ChaosSystem, symbol: str = "AAPL") -> None:
    """Fill the resting limit buys of ``symbol`` through the exchange's feed: move
    the price under every limit, then back."""
    before = requests.get(f"{system.exchange_url}/quotes/{symbol}", timeout=10).json()
    system.set_quote(symbol, last="49.00")
    system.set_quote(symbol, last=before["last"])


def produce_raw(topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS, "acks": "all"}
    )
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def stack_service(name: str):
    """The local stack's ``name`` service, to stop and start it as a fault; the
    scenario is skipped when that service is an external deployment."""
    import pytest

    from devstack.paths import StackPaths
    from devstack.services import all_services

    service = next(s for s in all_services(StackPaths.current()) if s.name == name)
    if service.is_external():
        pytest.skip(f"{name} is an external deployment: not restarted by the suite")
    return service


def bring_up(service, timeout: float = 120) -> None:
    """Start ``service`` again after a fault, retrying a start that failed (a port
    not yet released, a slow JVM): a service left down would fail every later
    scenario, not just this one."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            service.up()
            return
        except Exception as exc:  # StackError, or a wait that timed out
            if time.monotonic() > deadline:
                raise
            print(f"\n{service.name} did not start, retrying: {exc}")
            time.sleep(1)


def ensure_stack_up() -> None:
    """Every local service of the stack answers (after a scenario that stopped
    one, whatever happened to it)."""
    from devstack.paths import StackPaths
    from devstack.services import all_services

    for service in all_services(StackPaths.current()):
        if not service.is_external():
            bring_up(service)


def kill(process: AppProcess, signum=signal.SIGKILL) -> None:
    process.signal(signum)
    if signum in (signal.SIGKILL, signal.SIGTERM):
        with contextlib.suppress(Exception):
            process.popen.wait(30)
