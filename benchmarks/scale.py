"""5. Scale: end-to-end trades/s for 1, 2, 4, 8 topics with 1, 2, 3 executors, and
how evenly leadership spreads.

For each topic count a system of its own is started (api and relay restarted with
that TRADE_TOPICS and a fresh topic prefix / ZooKeeper root); executors are added
one at a time, waiting for balanced leadership each time. At each point a burst of
``scale_trades`` trades is placed closed-loop (at the placement peak's
concurrency, customers of every topic), CPU per role is accounted over placement
and drain, and

- ``e2e_tps`` = trades ÷ (last fill - first placement): the pipeline's rate,
  bounded by its slowest stage;
- ``fill_tps`` = trades ÷ (last fill - first fill): the executors' drain rate;
- ``placed_tps``: the api's rate during the burst (if it is the lowest, adding
  executors cannot raise e2e_tps: the bottleneck is upstream).
"""

from __future__ import annotations

import math

from benchmarks import load
from benchmarks.context import Context
from benchmarks.end_to_end import role_pids, trade_times, wait_terminal, warm_up
from benchmarks.profiling import CpuAccount
from benchmarks.system import System
from benchmarks.util import ratio, rnd

# A burst is a fixed number of trades; these only bound a pathological point.
MAX_BURST_SECONDS = 180.0
MAX_DRAIN_SECONDS = 300.0


def _burst(ctx: Context, system: System, concurrency: int, trades: int) -> dict:
    cpu = CpuAccount(role_pids(system))
    cpu.start()
    result = load.closed_loop(
        system.api_url,
        ctx.run.customers,
        concurrency=concurrency,
        duration=MAX_BURST_SECONDS,
        warmup=0,
        max_requests=trades,
        tick=lambda r: ctx.progress.update(
            f"scale {system.topics} topics x {len(system.live_executors())} "
            f"executors: {len(r.samples)}/{trades} placed"
        ),
    )
    ids = result.trade_ids()
    open_left = wait_terminal(ctx, system, ids, timeout=MAX_DRAIN_SECONDS)
    # Placement and drain: every trade's CPU, in every role.
    usage = cpu.stop(units=len(ids))
    rows = trade_times(ctx, ids)
    created = [c for _, c, _ in rows]
    filled = [f for _, _, f in rows if f is not None]
    if not created or not filled:
        return {"trades": len(ids), "e2e_tps": None, "fill_tps": None}
    first, last_placed = min(created), max(created)
    first_fill, last_fill = min(filled), max(filled)
    return {
        "trades": len(ids),
        "filled": len(filled),
        "still_open": open_left,
        "placed_tps": rnd(len(created) / max(1e-6, last_placed - first), 1),
        "fill_tps": rnd(len(filled) / max(1e-6, last_fill - first_fill), 1),
        "e2e_tps": rnd(len(filled) / max(1e-6, last_fill - first), 1),
        "drain_after_last_placement_s": rnd(last_fill - last_placed, 3),
        "cpu": usage,
    }


def run(ctx: Context) -> dict:
    profile = ctx.profile
    _, concurrency = ctx.placement_peak()
    ctx.stop_main_system()  # its relay would count in every relay's share
    grid = []
    for topics in profile.scale_topics:
        system = System(ctx.run, f"scale{topics}", topics=topics)
        try:
            ctx.progress.update(f"scale: starting a {topics}-topic system")
            system.start_api()
            system.start_relay()
            warmed = False
            for executors in profile.scale_executors:
                while len(system.live_executors()) < executors:
                    system.start_executor()
                system.wait_balanced()
                if not warmed:
                    warm_up(ctx, system, trades=max(4, topics))
                    warmed = True
                spread = system.spread()
                point = {
                    "topics": topics,
                    "executors": executors,
                    "leadership": spread,
                    "share": math.ceil(topics / executors),
                    "leaders_max": max(spread.values()),
                    "leaders_min": min(spread.values()),
                    **_burst(ctx, system, concurrency, profile.scale_trades),
                }
                grid.append(point)
                ctx.progress.log(
                    f"scale: {topics} topics x {executors} executors: "
                    f"e2e {point['e2e_tps']}/s (placed {point.get('placed_tps')}/s, "
                    f"fills {point.get('fill_tps')}/s), leaders {spread}"
                )
        finally:
            system.stop()
    out: dict = {
        "burst_trades": profile.scale_trades,
        "burst_concurrency": concurrency,
        "grid": grid,
    }

    def at(topics: int, executors: int) -> float | None:
        for point in grid:
            if point["topics"] == topics and point["executors"] == executors:
                return point["e2e_tps"]
        return None

    top = max(profile.scale_topics)
    low, high = min(profile.scale_executors), max(profile.scale_executors)
    # The target: going from 1 to 3 executors at 8 topics raises end-to-end
    # throughput (with a smaller grid: fewest → most executors at most topics).
    out["executor_scaling"] = {"topics": top, "from": low, "to": high}
    out["executor_scaling_from_tps"] = at(top, low)
    out["executor_scaling_to_tps"] = at(top, high)
    out["executor_scaling_ratio"] = ratio(at(top, high), at(top, low))
    out["leadership_balanced_everywhere"] = all(
        p["leaders_max"] <= p["share"] for p in grid
    )
    return out
