"""Fault scenarios on the real stack and processes. Each injects ONE fault while a
seeded workload flows, heals, waits for convergence and checks every invariant
(tests/chaos/harness.py). The default run is a CI-sized subset; ``CHAOS_FULL=1``
runs every scenario with more load and more rounds."""

from __future__ import annotations

import random
import signal
import threading
import time
from decimal import Decimal

import pytest
import requests
from django.db import close_old_connections, transaction

from broker.models import (
    ConsumerOffset,
    DeadLetter,
    FixSession,
    QuarantinedMessage,
    Trade,
    TradeEvent,
)
from broker.services.placement import trade_place
from broker.services.transitions import TERMINAL
from devstack.wait import wait_until
from tests.chaos.harness import (
    EXECUTORS,
    FULL,
    SESSION_TIMEOUT,
    Accepted,
    ChaosSystem,
    bring_up,
    kill,
    price_dip,
    produce_raw,
    stack_service,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]
full_only = pytest.mark.skipif(not FULL, reason="CHAOS_FULL=1 only")

# Load per tier: customers in parallel, operations per customer.
CUSTOMERS = 10 if FULL else 5
OPS = 30 if FULL else 12
TERMINAL_SET = set(TERMINAL)


def finish(
    system: ChaosSystem, number: int, label: str, results, *, extra: list[str] = ()
) -> None:
    """Heal whatever is still faulted, converge, check, print the one line, and
    fail with the violations."""
    system.exchange_faults()
    system.converge()
    violations = [*extra, *system.check()]
    system.report(number, label, violations, results)
    for note in system.notes:
        print(f"  {note}")
    assert not violations, "\n".join(violations[:40])


def _zombie_writes(system: ChaosSystem, topic: str, epoch: int, since) -> list[str]:
    """Writes stamped with a deposed leader's epoch after its successor claimed."""
    close_old_connections()
    found = [
        f"zombie write: {kind} event of trade {trade_id} epoch {epoch} at {at}"
        for trade_id, kind, at in TradeEvent.objects.filter(
            epoch=epoch, created_at__gt=since
        ).values_list("trade_id", "kind", "created_at")
    ]
    found += [
        f"zombie dead letter {letter}"
        for letter in DeadLetter.objects.filter(
            topic=topic, epoch=epoch, created_at__gt=since
        )
    ]
    return found


def _exchange_refuses(system: ChaosSystem, topic: str, epoch: int) -> list[str]:
    """The exchange must refuse the deposed epoch on the topic's FIX session: a
    Logon carrying it is answered with a Logout (stale epoch), nothing done."""
    answer = system.fix_logon_answer(topic, epoch)
    if answer.startswith("5:") and "stale epoch" in answer.lower():
        return []
    return [f"exchange accepted a Logon with the deposed epoch {epoch}: {answer}"]


# --- 2 ------------------------------------------------------------------------------


def test_02_sigstop_leader_past_session_timeout(make_system, chaos_results):
    """A leader paused past its ZooKeeper session (a GC pause, a frozen VM) wakes
    up after a successor took over: it must step down with zero writes, and the
    exchange must refuse its epoch. Paused with an order held at a slow exchange
    and outside any transaction (the variant inside a transaction is test_16):
    the order's reports go to the session, and the successor recovers them."""
    system = make_system()
    topic = system.topics[0]
    on_topic = system.clients_for(3, topic=topic)
    clients = system.clients_for(CUSTOMERS) + on_topic[1:]
    system.workload(clients, ops=OPS // 2, seed=2).start().wait()
    system.quiesce()
    leader = system.leader_of(topic)
    zombie, epoch = system.executors[leader.holder], leader.epoch
    # The only order in the window: held at a slow exchange when the leader
    # freezes.
    system.exchange_faults(fix_latency_ms=1500)
    body = system.place(on_topic[0], quantity="2")
    assert body is not None
    system.wait_status(body["id"], {"submitted"}, timeout=20)
    zombie.signal(signal.SIGSTOP)
    system.fault(f"SIGSTOP {zombie.name} (leader of {topic}, epoch {epoch})")
    system.exchange_faults()  # the held request keeps its delay
    load = system.workload(clients, ops=OPS // 2, seed=22).start()
    successor = system.wait_new_leader(topic, above=epoch, timeout=SESSION_TIMEOUT + 20)
    # Trades flow under the successor while the zombie sleeps.
    system.wait_status(body["id"], TERMINAL_SET, timeout=30)
    after = system.place(on_topic[0], quantity="1")
    assert after is not None
    system.wait_status(after["id"], TERMINAL_SET, timeout=30)
    zombie.signal(signal.SIGCONT)
    wait_until(
        lambda: (
            f"stopped leading topic={topic} epoch={epoch}" in system.logs(zombie.name)
        ),
        timeout=30,
        what="the woken leader to step down",
    )
    load.wait()
    extra = _zombie_writes(system, topic, epoch, successor.elected_at)
    extra += _exchange_refuses(system, topic, epoch)
    log = system.logs(zombie.name)
    system.notes.append(
        "zombie log: "
        + ", ".join(w for w in ("stale_epoch", "fenced", "session lost") if w in log)
    )
    finish(system, 2, "sigstop-leader-zombie", chaos_results, extra=extra)


def test_16_sigstop_leader_inside_a_fenced_transaction(make_system, chaos_results):
    """The leader is frozen while inside a fenced transaction (made deterministic:
    the test holds the customer's account row so the leader's settlement waits
    in its transaction, freezes the leader, then lets go). The successor must
    claim within the session timeout plus a margin, and the woken leader must
    write nothing."""
    from django.db import connection

    from broker.models import Account

    system = make_system()
    topic = system.topics[0]
    client = system.clients_for(1, topic=topic)[0]
    system.workload(system.clients_for(CUSTOMERS), ops=OPS // 2, seed=16).start().wait()
    system.quiesce()
    leader = system.leader_of(topic)
    zombie, epoch = system.executors[leader.holder], leader.epoch
    system.exchange_faults(fix_latency_ms=1000)
    body = system.place(client, quantity="1")
    assert body is not None
    system.wait_status(body["id"], {"submitted"}, timeout=20)
    extra: list[str] = []
    with transaction.atomic():
        Account.objects.select_for_update().get(customer=client.customer)

        def settlement_waits() -> bool:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                    "current_database() AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0] > 0

        wait_until(settlement_waits, timeout=15, what="the leader's settlement waits")
        zombie.signal(signal.SIGSTOP)
        system.fault(f"SIGSTOP {zombie.name} inside a fenced transaction")
    system.exchange_faults()
    try:
        successor = system.wait_new_leader(
            topic, above=epoch, timeout=SESSION_TIMEOUT + 10
        )
    except Exception:
        successor = None
        extra.append(
            f"no successor claimed {topic} within {SESSION_TIMEOUT + 10:.0f}s of "
            f"freezing its leader (claim blocked by the frozen transaction)"
        )
    zombie.signal(signal.SIGCONT)
    successor = successor or system.wait_new_leader(topic, above=epoch, timeout=30)
    wait_until(
        lambda: (
            f"stopped leading topic={topic} epoch={epoch}" in system.logs(zombie.name)
        ),
        timeout=30,
        what="the woken leader to step down",
    )
    extra += _zombie_writes(system, topic, epoch, successor.elected_at)
    finish(system, 16, "sigstop-inside-transaction", chaos_results, extra=extra)


# --- 11 -----------------------------------------------------------------------------


def _in_flight(system: ChaosSystem, client, *, latency_ms: int) -> dict:
    """Place a trade whose order is held by a slow exchange: latency on, wait
    until the leader sent it (the exchange counted the delay), latency off again
    (the held message keeps its delay)."""
    system.exchange_faults(fix_latency_ms=latency_ms)
    body = system.place(client, quantity="1")
    assert body is not None
    system.wait_status(body["id"], {"submitted"}, timeout=20)
    wait_until(
        lambda: system.exchange_fault_counters().get("fix_delayed", 0) >= 1,
        timeout=10,
        what="the order held at the exchange",
    )
    system.exchange_faults()
    body["held_until"] = time.monotonic() + latency_ms / 1000 + 1.0
    return body


def test_11_slow_exchange_and_leader_change_in_flight(make_system, chaos_results):
    """The leader's order is held at a slow exchange when leadership changes.
    (a) SIGKILL, and the customer cancels at once: the successor continues the
    FIX session; the order exists once at the exchange (sent once, or resent on
    request and deduplicated by ClOrdID) and the cancel settles it — canceled,
    or filled if the fill came first, never both. (b) SIGTERM: the leader logs
    out within its grace period and the successor takes the session over."""
    system = make_system()
    topic_a, topic_b = system.topics[1], system.topics[2]
    client_a = system.clients_for(1, topic=topic_a)[0]
    client_b = system.clients_for(1, topic=topic_b)[0]
    clients = system.clients_for(CUSTOMERS)
    system.workload(clients, ops=OPS // 3, seed=11).start().wait()
    system.quiesce()

    leader = system.leader_of(topic_a)
    body = _in_flight(system, client_a, latency_ms=5000)
    kill(system.executors[leader.holder])
    system.fault(f"SIGKILL {leader.holder} (leader of {topic_a}), order held")
    assert system.cancel(client_a, body["id"]) == 202
    load = system.workload(clients, ops=OPS // 3, seed=111).start()
    system.wait_new_leader(topic_a, above=leader.epoch, timeout=SESSION_TIMEOUT + 20)
    system.wait_status(body["id"], TERMINAL_SET, timeout=30)
    system.start_executor(leader.holder)
    load.wait()
    system.quiesce()

    leader_b = system.leader_of(topic_b)
    body_b = _in_flight(system, client_b, latency_ms=3000)
    kill(system.executors[leader_b.holder], signal.SIGTERM)
    system.fault(f"SIGTERM {leader_b.holder} (leader of {topic_b}), order held")
    system.cancel(client_b, body_b["id"])
    load = system.workload(clients, ops=OPS // 3, seed=1111).start()
    system.wait_new_leader(topic_b, above=leader_b.epoch, timeout=30)
    system.wait_status(body_b["id"], TERMINAL_SET, timeout=30)
    system.start_executor(leader_b.holder)
    load.wait()
    # The held messages are processed when their injected delay ends (the
    # condition is the fault's own schedule); only then is the outcome final.
    wait_until(
        lambda: time.monotonic() > max(body["held_until"], body_b["held_until"]),
        timeout=20,
        what="the held orders processed by the exchange",
    )
    finish(system, 11, "slow-exchange-leader-change", chaos_results)


# --- 1 ------------------------------------------------------------------------------


def test_01_sigkill_leader_after_send_before_db_write(make_system, chaos_results):
    """The exchange accepts and fills the orders but their ExecutionReports never
    reach the leader (withheld: a gap in the exchange's numbers), and the leader
    is SIGKILLed before it booked anything. The successor continues the session
    from the stored numbers, asks for the gap again and books every report: no
    second order, no lost fill."""
    system = make_system()
    topic = system.topics[3]
    client = system.clients_for(1, topic=topic)[0]
    others = [c for c in system.clients_for(CUSTOMERS + 2) if c.topic != topic]
    load = system.workload(others, ops=OPS, seed=1).start()
    load.wait_ops(10)
    system.exchange_faults(fix_withhold_rate=1)
    bodies = [system.place(client, quantity="2") for _ in range(2)]
    assert all(bodies)

    def done_at_the_exchange() -> bool:
        orders = {o["client_order_id"]: o for o in system.exchange_orders()}
        return all(orders.get(b["id"], {}).get("status") == "filled" for b in bodies)

    wait_until(done_at_the_exchange, timeout=20, what="the orders filled, unreported")
    assert all(system.trade_status(b["id"]) == "submitted" for b in bodies)
    leader = system.leader_of(topic)
    kill(system.executors[leader.holder])
    system.fault(f"SIGKILL {leader.holder} with every report of its orders withheld")
    system.exchange_faults()
    system.wait_new_leader(topic, above=leader.epoch, timeout=30)
    for body in bodies:
        assert system.wait_status(body["id"], TERMINAL_SET, timeout=30) == "filled"
    system.start_executor(leader.holder)
    load.wait()
    finish(system, 1, "sigkill-reports-withheld", chaos_results)


# --- 10 -----------------------------------------------------------------------------


FIX_LINK_FAULTS = (
    "fix_disconnects",
    "fix_withheld_reports",
    "fix_duplicated_reports",
    "fix_garbled_reports",
)


def test_10_faults_on_the_fix_link(make_system, chaos_results):
    """The connection cut after every few orders, reports withheld (gaps),
    duplicated (PossDupFlag) and garbled (bad CheckSum), and slow answers, all
    while the load flows and resting orders fill: every gap recovered by
    ResendRequest, every duplicate passed over, every garbled frame quarantined
    and recovered, every report booked once."""
    system = make_system()
    load = system.workload(system.clients_for(CUSTOMERS + 2), ops=OPS, seed=10).start()
    load.wait_ops(8)
    system.exchange_faults(
        fix_disconnect_after=7,
        fix_withhold_rate=0.2,
        fix_duplicate_rate=0.3,
        fix_garble_rate=0.1,
        fix_latency_ms=20,
        seed=10,
    )
    load.wait_ops(8 + (60 if FULL else 25), timeout=90)
    price_dip(system, "AAPL")  # resting limits fill through the faulted link
    # The load may pass the faulted link in a fraction of a second (once, 270 ms
    # and no report withheld yet): keep orders going through it until each fault
    # has been injected at least once.
    prober = system.new_client()

    def every_fault_injected() -> dict | None:
        counters = system.exchange_fault_counters()
        if all(counters[name] > 0 for name in FIX_LINK_FAULTS):
            return counters
        system.place(prober)
        return None

    counters = wait_until(
        every_fault_injected,
        timeout=60,
        interval=0.2,
        what=f"each of {FIX_LINK_FAULTS} injected at least once",
    )
    system.exchange_faults()
    system.notes.append(f"exchange fault counters: {counters}")
    load.wait(timeout=180)
    extra = []
    garbled = QuarantinedMessage.objects.filter(
        session__in=system.fix_sessions, reason__startswith="garbled"
    ).count()
    if not garbled:
        extra.append("garbled reports were sent but none was recorded")
    finish(system, 10, "fix-link-faults", chaos_results, extra=extra)


# --- 13 -----------------------------------------------------------------------------


def test_13_poison_messages_dead_lettered(make_system, chaos_results):
    """Garbage bytes, an unknown event type and an event without a valid trade id
    on a topic: each is dead-lettered (topic and table), the topic keeps flowing."""
    system = make_system()
    topic = system.topics[0]
    client = system.clients_for(1, topic=topic)[0]
    load = system.workload(
        [*system.clients_for(CUSTOMERS), client], ops=OPS, seed=13
    ).start()
    load.wait_ops(5)
    key = str(client.customer.pk).encode()
    poison = [
        (key, b"\x00\xff garbage \xfe"),
        (key, b'{"event_id": 1, "event_type": "trade.exploded", "payload": {}}'),
        (key, b'{"event_id": 2, "event_type": "trade.placed", "payload": {}}'),
    ]
    produce_raw(topic, poison)
    system.fault(f"{len(poison)} poison messages on {topic}")
    after = system.place(client, quantity="1")
    assert after is not None
    assert system.wait_status(after["id"], TERMINAL_SET, timeout=30) == "filled"
    load.wait()
    extra = []
    close_old_connections()
    letters = list(DeadLetter.objects.filter(topic=topic))
    if len(letters) != len(poison):
        extra.append(f"{len(letters)} dead letters for {len(poison)} poison messages")
    dlq = system.read_topic(system.dlq)
    if len(dlq) != len(poison):
        extra.append(f"{len(dlq)} messages on the dead-letter topic")
    finish(system, 13, "poison-message", chaos_results, extra=extra)


# --- 6 ------------------------------------------------------------------------------


def test_06_two_relays_one_customer_burst(make_system, chaos_results):
    """A burst of one customer's trades from several threads while two relays share
    the outbox and the shards move between them (a third relay joins, one
    leaves): the customer's events are on Kafka in commit order."""
    system = make_system(relays=2)
    burst = system.clients_for(1)[0]
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=6).start()
    count = 60 if FULL else 30

    def fire(n: int) -> None:
        for i in range(n):
            system.place(burst, quantity="1", symbol=("AAPL", "MSFT")[i % 2])

    threads = [threading.Thread(target=fire, args=(count // 4,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    system.start_relay()
    system.fault("a third relay joins during the burst")
    wait_until(
        lambda: burst_done(threads) or len(system.accepted) > count // 2,
        timeout=30,
        what="half the burst",
    )
    kill(system.relays[0], signal.SIGTERM)
    system.fault("relay-1 leaves during the burst")
    for thread in threads:
        thread.join(60)
    load.wait()
    finish(system, 6, "two-relays-burst", chaos_results)


def burst_done(threads) -> bool:
    return not any(t.is_alive() for t in threads)


# --- 12 -----------------------------------------------------------------------------


def test_12_replay_topics_from_offset_zero(make_system, chaos_results):
    """Every executor stops; the stored consumer offsets are deleted, every FIX
    session's expected incoming number is set back to 1, and every topic's
    messages are produced once more: the new leaders replay everything from
    offset 0 and ask the exchange to resend every report of the session, with no
    second effect, while new trades flow."""
    system = make_system()
    clients = system.clients_for(CUSTOMERS)
    load = system.workload(clients, ops=OPS // 2, seed=12).start()
    load.wait()
    price_dip(system, "MSFT")
    system.converge()
    for name in EXECUTORS:
        kill(system.executors[name], signal.SIGTERM)
    for topic in system.topics:
        messages = system.read_topic(topic)
        produce_raw(topic, [(m.key(), m.value()) for m in messages])
    close_old_connections()
    ConsumerOffset.objects.filter(topic__in=system.topics).delete()
    FixSession.objects.filter(sender_comp_id__in=system.fix_sessions).update(
        next_in_seq=1
    )
    system.fault("offsets deleted, FIX sessions to be replayed, topics produced again")
    load = system.workload(clients, ops=OPS // 2, seed=1212).start()
    for name in EXECUTORS:
        system.start_executor(name)
    load.wait()
    finish(system, 12, "replay-from-zero", chaos_results)


# --- 3 ------------------------------------------------------------------------------


def test_03_zookeeper_restarts(make_system, chaos_results):
    """ZooKeeper restarted while the load flows, (a) quicker than the executors'
    session timeout, (b) held down for longer than it. Leaders suspend (no send,
    no write) while disconnected and, on reconnecting, check that their election
    node still exists and is theirs before resuming. Placement never needs
    ZooKeeper: trades keep being accepted and drain afterwards."""
    zookeeper = stack_service("zookeeper")
    # A restart takes a JVM start (~5 s): a 15 s session outlives (a).
    system = make_system(session_timeout=15.0)
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=3).start()
    load.wait_ops(10)
    try:
        zookeeper.down()
        system.fault("ZooKeeper stopped, restarted within the session timeout")
        bring_up(zookeeper)
        system.wait_all_led()
        load.wait_ops(20, timeout=60)
        zookeeper.down()
        stopped_at = time.monotonic()
        system.fault("ZooKeeper stopped for longer than the session timeout")
        # The fault lasts past the session timeout (the deadline is the fault's
        # own schedule, not a guess at a condition).
        wait_until(
            lambda: time.monotonic() > stopped_at + system.session_timeout + 2,
            timeout=system.session_timeout + 10,
            what="ZooKeeper down past the session timeout",
        )
    finally:
        bring_up(zookeeper)
    system.wait_all_led(timeout=90)
    load.wait(timeout=180)
    after = system.place(system.clients_for(1)[0], quantity="1")
    assert after is not None
    assert system.wait_status(after["id"], TERMINAL_SET, timeout=60) == "filled"
    finish(system, 3, "zookeeper-restarts", chaos_results)


# --- 8 ------------------------------------------------------------------------------


def test_08_kafka_restart_while_producing_and_consuming(make_system, chaos_results):
    """The Kafka broker stops and starts while relays produce and leaders consume:
    placements keep committing (the outbox absorbs them), relays retry, leaders
    resume from their stored offsets; nothing lost, nothing twice, order kept."""
    kafka = stack_service("kafka")
    system = make_system()
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=8).start()
    load.wait_ops(10)
    try:
        kafka.down()
        system.fault("Kafka broker stopped")
        accepted = len(system.accepted)
        wait_until(
            lambda: len(system.accepted) >= accepted + 5 or not load.running,
            timeout=30,
            what="placements accepted while Kafka is down",
        )
    finally:
        bring_up(kafka)
    system.fault("Kafka broker restarted")
    load.wait(timeout=180)
    finish(system, 8, "kafka-restart", chaos_results)


# --- 9 ------------------------------------------------------------------------------


def test_09_postgres_restarts(make_system, chaos_results):
    """PostgreSQL restarts (fast shutdown: every session cut) twice: during
    placements, and while leaders apply fills from the feed. Interrupted
    transactions roll back whole; the api answers 503 meanwhile; relays take
    their shard locks again; leaders retry under the fence."""
    postgres = stack_service("postgres")
    system = make_system()
    clients = system.clients_for(CUSTOMERS)
    load = system.workload(clients, ops=OPS, seed=9).start()
    load.wait_ops(10)
    try:
        postgres.down()
        system.fault("PostgreSQL stopped during placements")
    finally:
        bring_up(postgres)
    load.wait(timeout=180)
    load = system.workload(clients, ops=OPS // 2, seed=99).start()
    load.wait_ops(5)
    price_dip(system, "AAPL")  # fills resting buys: feed reports being applied
    try:
        postgres.down()
        system.fault("PostgreSQL stopped while leaders apply fills")
    finally:
        bring_up(postgres)
    price_dip(system, "MSFT")
    load.wait(timeout=180)
    finish(system, 9, "postgres-restarts", chaos_results)


# --- 4 ------------------------------------------------------------------------------


@full_only
def test_04_sigkill_relays_repeatedly(make_system, chaos_results):
    """Relays SIGKILLed again and again under load (some between produce and stamp):
    nothing lost, order kept, no double effect."""
    system = make_system(relays=2)
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=4).start()
    rng = random.Random(4)
    rounds = 12 if FULL else 4
    for _ in range(rounds):
        if not load.running:
            break
        index = rng.randrange(len(system.relays))
        system.relays[index] = _restart_relay_hard(system, system.relays[index])
        system.fault(f"SIGKILL relay {index + 1}")
        time.sleep(rng.uniform(0.3, 1.2))
    load.wait()
    finish(system, 4, "sigkill-relays", chaos_results)


def _restart_relay_hard(system: ChaosSystem, process):
    kill(process)
    system.launcher.processes.remove(process)
    return system.launcher.start(process.name, process.popen.args)


# --- 7 ------------------------------------------------------------------------------


@full_only
def test_07_placement_held_open_commits_out_of_id_order(make_system, chaos_results):
    """A placement transaction takes its outbox id, then stays open while later
    ids (other customers, same topic) commit and are published: once it commits,
    its event is published too (the relay reads the unpublished rows, not past a
    high-water mark)."""
    system = make_system()
    topic = system.topics[2]
    held, others = (
        system.clients_for(1, topic=topic)[0],
        system.clients_for(3, topic=topic),
    )
    release = threading.Event()
    placed: dict = {}

    def hold_open() -> None:
        try:
            with transaction.atomic():
                trade = trade_place(
                    customer=held.customer,
                    symbol="AAPL",
                    side="buy",
                    quantity=Decimal("1"),
                    order_type="market",
                    price_source=lambda _s: Decimal(
                        requests.get(
                            f"{system.exchange_url}/quotes/AAPL", timeout=5
                        ).json()["last"]
                    ),
                )
                placed["trade"] = trade
                release.wait(30)
        finally:
            close_old_connections()

    thread = threading.Thread(target=hold_open)
    thread.start()
    wait_until(lambda: "trade" in placed, timeout=10, what="the held placement")
    system.fault("placement transaction held open")
    load = system.workload(others + system.clients_for(CUSTOMERS), ops=OPS, seed=7)
    load.start()
    load.wait_ops(20)
    release.set()
    thread.join(30)
    trade_id = str(placed["trade"].id)
    system.accepted.append(Accepted(trade_id, held.customer.pk, "held"))
    assert system.wait_status(trade_id, TERMINAL_SET, timeout=30) == "filled"
    load.wait()
    finish(system, 7, "held-transaction", chaos_results)


# --- 5 ------------------------------------------------------------------------------


@full_only
def test_05_sigkill_relay_before_delivery_report(make_system, chaos_results):
    """Kafka is frozen (SIGSTOP) for a few seconds so the relays' produce requests
    are pending; the relays are SIGKILLed before any delivery report, Kafka
    resumes, new relays republish."""
    from devstack.kafka import Kafka
    from devstack.paths import StackPaths

    kafka_pid = Kafka(StackPaths.current()).running_pid()
    if kafka_pid is None:
        pytest.skip("Kafka is external")
    import os

    system = make_system(relays=2)
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=5).start()
    load.wait_ops(15)
    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        system.fault("Kafka SIGSTOP")
        time.sleep(1.5)  # placements pile up in the outbox and in the producers
        for index, relay in enumerate(list(system.relays)):
            system.relays[index] = _restart_relay_hard(system, relay)
            system.fault(f"SIGKILL relay {index + 1} with deliveries pending")
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    load.wait()
    finish(system, 5, "sigkill-relay-before-report", chaos_results)


# --- 14 -----------------------------------------------------------------------------


@full_only
def test_14_random_kills_and_restarts(make_system, chaos_results):
    """Seeded random SIGKILL/SIGTERM/SIGSTOP of executors and relays under random
    load, for a fixed number of rounds; everything restarted, then checked."""
    system = make_system(relays=2)
    rng = random.Random(14)
    load = system.workload(
        system.clients_for(CUSTOMERS + 4), ops=OPS * 2, seed=14
    ).start()
    rounds = 10 if FULL else 4
    for _ in range(rounds):
        action = rng.choice(["kill-exec", "term-exec", "stop-exec", "kill-relay"])
        if action == "kill-relay":
            index = rng.randrange(len(system.relays))
            system.relays[index] = _restart_relay_hard(system, system.relays[index])
        else:
            name = rng.choice(EXECUTORS)
            process = system.executors[name]
            if action == "stop-exec":
                process.signal(signal.SIGSTOP)
                time.sleep(rng.uniform(1, SESSION_TIMEOUT + 2))
                process.signal(signal.SIGCONT)
            else:
                kill(
                    process, signal.SIGKILL if action == "kill-exec" else signal.SIGTERM
                )
                time.sleep(rng.uniform(0.2, 2))
                system.start_executor(name)
        system.fault(action)
        time.sleep(rng.uniform(0.5, 2))
    load.wait(timeout=180)
    system.wait_all_led(timeout=60)
    finish(system, 14, "random-kills", chaos_results)


# --- 15 (found by this suite, fixed) ------------------------------------------------


def test_15_cancel_races_the_executors_submit(make_system, chaos_results):
    """The customer's cancel commits while the leader is between reading the
    accepted trade and marking it submitted (made deterministic with a row lock
    held by the test). The trade must end canceled with no live order at the
    exchange, or filled if the exchange filled it - never canceled in the books
    and open (then filled) at the exchange."""
    from django.db import connection

    from broker.models import Account
    from broker.services.cancellation import trade_request_cancel

    system = make_system()
    topic = system.topics[1]
    client = system.clients_for(1, topic=topic)[0]
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=15).start()
    leader = system.executors[system.leader_of(topic).holder]
    leader.signal(signal.SIGSTOP)  # well inside the session timeout
    system.fault(f"SIGSTOP {leader.name} briefly; cancel raced against its submit")
    try:
        body = system.place(client, quantity="1", type="limit", limit_price="50")
        assert body is not None
        wait_until(
            lambda: system.outbox_backlog() == 0, timeout=10, what="event published"
        )
        with transaction.atomic():
            Account.objects.select_for_update().get(customer=client.customer)
            Trade.objects.select_for_update().get(id=body["id"])
            leader.signal(signal.SIGCONT)

            def executor_blocked() -> bool:
                with connection.cursor() as cursor:
                    # Inside a transaction the activity view is a snapshot.
                    cursor.execute("SELECT pg_stat_clear_snapshot()")
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE "
                        "datname = current_database() AND wait_event_type = 'Lock' "
                        "AND query LIKE 'UPDATE \"broker_trade\"%%'"
                    )
                    return cursor.fetchone()[0] > 0

            wait_until(executor_blocked, timeout=10, what="the executor's UPDATE waits")
            trade_request_cancel(customer=client.customer, trade_id=body["id"])
    finally:
        leader.signal(signal.SIGCONT)
    system.wait_status(body["id"], TERMINAL_SET, timeout=30)
    price_dip(system, "AAPL")  # a live order left at the exchange now fills
    load.wait()
    finish(system, 15, "cancel-races-submit", chaos_results)


# --- 17-21: the FIX session -----------------------------------------------------------


def test_17_fix_connection_cut_mid_burst(make_system, chaos_results):
    """A burst of one customer's orders while the exchange cuts the FIX connection
    after every third order: each cut is followed by a new logon on the same
    numbering; whatever was journaled and not delivered is resent on request; the
    customer's orders reach the exchange in the order they were placed, once."""
    system = make_system()
    burst = system.clients_for(1)[0]
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS // 2, seed=17)
    load.start()
    system.exchange_faults(fix_disconnect_after=3)
    count = 40 if FULL else 20
    bodies = [system.place(burst, quantity="1") for _ in range(count)]
    # The placements return at the api's commit: the burst reaches the link after.
    counters = wait_until(
        lambda: (c := system.exchange_fault_counters())["fix_disconnects"] > 0 and c,
        timeout=30,
        what="the link cut during the burst",
    )
    system.exchange_faults()
    system.notes.append(f"exchange fault counters: {counters}")
    load.wait()
    system.converge()
    extra = []
    arrival = [
        o["client_order_id"]
        for o in system.exchange_orders()
        if o["client_order_id"] in {b["id"] for b in bodies if b}
    ]
    placed = [b["id"] for b in bodies if b]
    if arrival != placed:
        extra.append(f"orders reached the exchange out of order: {arrival[:5]}...")
    finish(system, 17, "fix-cut-mid-burst", chaos_results, extra=extra)


def test_18_fill_outside_the_limit_is_quarantined(make_system, chaos_results):
    """The exchange reports limit fills at a price beyond the limit: each such
    report is quarantined — no fill booked, the hold kept, the trade flagged,
    the raw message kept for operations — and the session goes on: orders placed
    afterwards settle normally."""
    system = make_system()
    topic = system.topics[2]
    victim = system.clients_for(1, topic=topic)[0]
    clients = system.clients_for(CUSTOMERS)
    system.workload(clients, ops=OPS // 2, seed=18).start().wait()
    system.quiesce()
    system.exchange_faults(fix_fill_outside_limit="25")
    bodies = [
        system.place(victim, quantity="1", type="limit", limit_price="60")
        for _ in range(3)
    ]
    assert all(bodies)
    for body in bodies:
        system.wait_status(body["id"], {"submitted"}, timeout=20)
    price_dip(system, "AAPL")  # the limits cross: filled, reported at limit + 25
    wait_until(
        lambda: (
            QuarantinedMessage.objects.filter(
                trade_id__in=[b["id"] for b in bodies]
            ).count()
            >= len(bodies)
        ),
        timeout=30,
        what="the reports of the bad fills quarantined",
    )
    system.exchange_faults()
    extra = []
    for body in bodies:
        trade = Trade.objects.get(id=body["id"])
        if trade.filled_quantity or not trade.hold_remaining:
            extra.append(
                f"quarantined trade {trade.id}: filled {trade.filled_quantity}, "
                f"hold {trade.hold_remaining}"
            )
        if "above the buy's limit" not in trade.review_reason:
            extra.append(f"{trade.id} flagged for {trade.review_reason!r}")
    system.workload(clients, ops=OPS // 2, seed=181).start().wait()
    after = system.place(victim, quantity="1")
    assert after is not None
    if system.wait_status(after["id"], TERMINAL_SET, timeout=30) != "filled":
        extra.append("the session stalled after the quarantine")
    finish(system, 18, "fill-outside-limit", chaos_results, extra=extra)


def test_19_sigkill_leader_mid_session(make_system, chaos_results):
    """A leader SIGKILLed under load, with orders and reports in flight: the
    successor continues the session's numbers (never resets them: no Logout for
    a number too low at either side) and misses no report."""
    system = make_system()
    topic = system.topics[0]
    load = system.workload(system.clients_for(CUSTOMERS + 2), ops=OPS, seed=19)
    load.start()
    load.wait_ops(12)
    before = system.exchange_fix_sessions()[system.fix_session_of(topic)]
    leader = system.leader_of(topic)
    kill(system.executors[leader.holder])
    system.fault(f"SIGKILL {leader.holder} (leader of {topic}) mid-session")
    system.wait_new_leader(topic, above=leader.epoch, timeout=SESSION_TIMEOUT + 20)
    system.start_executor(leader.holder)
    load.wait()
    price_dip(system, "MSFT")
    system.quiesce()
    extra = []
    after = system.exchange_fix_sessions()[system.fix_session_of(topic)]
    if after["next_in"] <= before["next_in"] or after["next_out"] <= before["next_out"]:
        extra.append(f"the session's numbers did not go on: {before} -> {after}")
    too_low = [
        name
        for name in EXECUTORS
        if "MsgSeqNum too low" in system.logs(name)
        or "MsgSeqNum too low" in system.logs("exchange_mock")
    ]
    if too_low:
        extra.append(f"a sequence number went backwards ({too_low})")
    finish(system, 19, "sigkill-leader-mid-session", chaos_results, extra=extra)


def test_20_exchange_restarts(make_system, chaos_results):
    """exchange_mock is stopped and started again on its store while orders
    flow: its numbers and journal survive, the sessions log on again and
    resume where they were (resending on request), nothing lost or doubled."""
    system = make_system()
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=20).start()
    load.wait_ops(10)
    exchange = next(p for p in system.launcher.processes if p.name == "exchange_mock")
    assert exchange.stop() == 0
    system.launcher.processes.remove(exchange)
    system.fault("exchange_mock stopped")
    system.launcher.start_exchange(system.exchange_url, store=system.exchange_store)
    system.fault("exchange_mock started again on its store")
    load.wait(timeout=180)
    finish(system, 20, "exchange-restarts", chaos_results)


@full_only
def test_21_exchange_refuses_logons_for_a_while(make_system, chaos_results):
    """Every Logon is refused for a few seconds (the venue down for a session
    restart) after the connection is cut: orders keep being journaled, then go
    out in order when the session is back."""
    system = make_system()
    load = system.workload(system.clients_for(CUSTOMERS), ops=OPS, seed=21).start()
    load.wait_ops(8)
    system.exchange_faults(fix_refuse_logons=True, fix_disconnect_after=1)
    wait_until(
        lambda: system.exchange_fault_counters().get("fix_refused_logons", 0) >= 3,
        timeout=30,
        what="logons refused",
    )
    system.exchange_faults()
    load.wait(timeout=180)
    finish(system, 21, "logons-refused", chaos_results)
