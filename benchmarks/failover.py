"""4. Failover, against the ZooKeeper session timeout in force.

- SIGKILL: with 3 executors, repeatedly find the leader of a topic
  (broker_topicleader), SIGKILL it, place one trade for a customer of that topic
  and measure kill → that trade's filled_at; then start a replacement executor and
  wait until leadership is balanced with a successor queued on every topic.
- SIGSTOP (zombie): stop the leader for longer than the session timeout, measure
  stop → the successor's fill of a trade placed after the stop, place more trades
  for the successor, SIGCONT the zombie, give it time to act, and count the
  TradeEvent rows written with the zombie's epoch after its successor's
  elected_at (must be 0).

The negotiated session timeout is read from a ZooKeeper session opened with the
executors' configured value (kazoo logs the negotiated one).
"""

from __future__ import annotations

import logging
import re
import signal
import time

from benchmarks import load
from benchmarks.context import Context
from benchmarks.end_to_end import ensure_running, trade_times, wait_terminal, warm_up
from benchmarks.system import System
from benchmarks.util import percentile, ratio, rnd

ZOMBIE_MARGIN = 3.0  # seconds past the session timeout the zombie stays stopped
ZOMBIE_AWAKE = 5.0  # seconds the woken zombie gets to (try to) write


def negotiated_session_timeout(ctx: Context, requested: float) -> float | None:
    """The session timeout ZooKeeper grants for ``requested`` seconds."""
    from kazoo.client import KazooClient

    found: list[int] = []

    class _Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            match = re.search(r"negotiated session timeout: (\d+)", record.getMessage())
            if match:
                found.append(int(match.group(1)))

    logger = logging.getLogger(f"bench.kazoo.{ctx.run.run_id}")
    logger.setLevel(1)
    logger.propagate = False
    logger.addHandler(_Capture())
    zk = KazooClient(hosts=ctx.run.zookeeper, timeout=requested, logger=logger)
    try:
        zk.start(timeout=15)
    finally:
        zk.stop()
        zk.close()
    return found[0] / 1000 if found else None


def _wait_filled(ctx: Context, system: System, trade_id: str, timeout: float) -> float:
    def filled():
        rows = trade_times(ctx, [trade_id])
        return rows and rows[0][2]

    return float(system.wait(filled, timeout=timeout, what=f"trade {trade_id} filled"))


def _ready(ctx: Context, system: System) -> None:
    while len(system.live_executors()) < 3:
        system.start_executor()
    system.wait(
        system.ready_for_failover,
        timeout=180,
        what="balanced leaders with successors queued",
        interval=0.2,
    )


def run(ctx: Context) -> dict:
    profile = ctx.profile
    system = ctx.main_system()
    ctx.progress.update("starting the system (3 executors)")
    ensure_running(ctx, system, 3)
    warm_up(ctx, system, trades=4)
    configured = system.session_timeout
    negotiated = negotiated_session_timeout(ctx, configured) or configured
    out: dict = {
        "executors": 3,
        "topics": system.topics,
        "session_timeout_configured_s": configured,
        "session_timeout_negotiated_s": negotiated,
    }
    wait_limit = max(60.0, 10 * negotiated)

    kills = []
    for i in range(profile.failover_kills):
        _ready(ctx, system)
        topic = system.topic_names()[i % system.topics]
        epoch, holder, _ = system.leaders()[topic]
        customer = system.customers_on(topic)[i % len(system.customers_on(topic))]
        ctx.progress.update(f"kill {i + 1}/{profile.failover_kills}: SIGKILL {holder}")
        killed_at = time.time()
        system.kill_executor(holder, signal.SIGKILL)
        trade_id = load.place_one(system.api_url, customer)
        filled_at = _wait_filled(ctx, system, trade_id, wait_limit)
        new_epoch, successor, elected_at = system.leaders()[topic]
        kills.append(
            {
                "topic": topic,
                "killed": holder,
                "successor": successor,
                "old_epoch": epoch,
                "new_epoch": new_epoch,
                "kill_to_elected_s": rnd(elected_at.timestamp() - killed_at, 3),
                "kill_to_filled_s": rnd(filled_at - killed_at, 3),
            }
        )
        ctx.progress.log(
            f"failover {i + 1}: {holder} killed, {successor} filled after "
            f"{filled_at - killed_at:.2f}s (session timeout {negotiated:g}s)"
        )
        system.start_executor()  # the replacement
    durations = [k["kill_to_filled_s"] for k in kills]
    out["kills"] = kills
    out["kill_count"] = len(kills)
    out["failover_p50_s"] = rnd(percentile(durations, 50), 3)
    out["failover_p99_s"] = rnd(percentile(durations, 99), 3)
    out["failover_max_s"] = rnd(max(durations), 3) if durations else None
    out["failover_p50_vs_session_timeout_ratio"] = ratio(
        out["failover_p50_s"], negotiated
    )
    out["failover_p99_vs_session_timeout_ratio"] = ratio(
        out["failover_p99_s"], negotiated
    )

    zombies = []
    for i in range(profile.zombie_rounds):
        _ready(ctx, system)
        zombies.append(_zombie_round(ctx, system, i, negotiated, wait_limit))
    out["zombies"] = zombies
    if zombies:
        times = [z["stop_to_filled_s"] for z in zombies]
        out["zombie_successor_p50_s"] = rnd(percentile(times, 50), 3)
        out["zombie_successor_max_s"] = rnd(max(times), 3)
        out["zombie_successor_max_vs_session_timeout_ratio"] = ratio(
            out["zombie_successor_max_s"], negotiated
        )
        out["zombie_writes"] = sum(z["zombie_writes"] for z in zombies)
    return out


def _zombie_round(
    ctx: Context, system: System, index: int, timeout: float, wait_limit: float
) -> dict:
    topic = system.topic_names()[(index + 1) % system.topics]
    leaders = system.leaders()
    _, holder, _ = leaders[topic]
    led = {t: epoch for t, (epoch, h, _) in leaders.items() if h == holder}
    process = system.executors[holder]
    customers = system.customers_on(topic)
    ctx.progress.update(f"zombie {index + 1}: SIGSTOP {holder} (leads {sorted(led)})")
    stopped_at = time.time()
    process.signal(signal.SIGSTOP)
    try:
        trade_id = load.place_one(system.api_url, customers[0])
        filled_at = _wait_filled(ctx, system, trade_id, wait_limit)
        # More work for the successor while the zombie sleeps: on waking, the
        # zombie's consumer may see these too, and must not act on them.
        more = [load.place_one(system.api_url, c) for c in customers[1:4]]
        wait_terminal(ctx, system, more, timeout=wait_limit)
        asleep = time.time() - stopped_at
        if asleep < timeout + ZOMBIE_MARGIN:
            time.sleep(timeout + ZOMBIE_MARGIN - asleep)
    finally:
        process.signal(signal.SIGCONT)
    woke_at = time.time()
    ctx.progress.update(f"zombie {index + 1}: {holder} woken, watching its writes")
    time.sleep(ZOMBIE_AWAKE)
    after = system.leaders()
    writes = 0
    with ctx.run.connect() as conn:
        for led_topic, old_epoch in led.items():
            new_epoch, _, elected_at = after[led_topic]
            if new_epoch == old_epoch:
                continue  # never taken over (cannot happen past the timeout)
            writes += conn.execute(
                "SELECT count(*) FROM broker_tradeevent WHERE epoch = %s "
                "AND created_at > %s",
                [old_epoch, elected_at],
            ).fetchone()[0]
    new_epoch, successor, elected_at = after[topic]
    result = {
        "topic": topic,
        "zombie": holder,
        "zombie_topics": sorted(led),
        "successor": successor,
        "stopped_s": rnd(woke_at - stopped_at, 3),
        "stop_to_elected_s": rnd(elected_at.timestamp() - stopped_at, 3),
        "stop_to_filled_s": rnd(filled_at - stopped_at, 3),
        "zombie_writes": writes,
        "zombie_alive_after_wake": process.alive(),
    }
    ctx.progress.log(
        f"zombie {index + 1}: {holder} stopped {result['stopped_s']}s, successor "
        f"{successor} filled after {result['stop_to_filled_s']}s, zombie writes "
        f"after takeover: {writes}"
    )
    return result
