"""Sizes and durations of a QUICK (smoke, < 5 minutes) and a FULL run (about half
an hour on the shared 2-core machine: the issue's 20 kills and the 4 x 3 scale grid
are kept, windows are as short as still gives a few thousand samples)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    customers: int
    # 1. placement
    placement_concurrency: tuple[int, ...]
    placement_seconds: float
    placement_warmup: float
    latency_seconds: float
    profile_seconds: float  # the profiled window after the latency window
    pgbench_seconds: int
    pgbench_scale: int  # at least; raised to the client count (branch rows)
    # 2. relay
    relay_rows: int
    relay_lag_rate: float
    relay_lag_seconds: float
    # 3. end to end
    e2e_topics: int
    e2e_executors: int
    e2e_latency_seconds: float
    e2e_ramp_fractions: tuple[float, ...]
    e2e_ramp_seconds: float
    # 4. failover
    failover_kills: int
    zombie_rounds: int
    # 5. scale
    scale_topics: tuple[int, ...]
    scale_executors: tuple[int, ...]
    scale_trades: int  # trades per (topics, executors) point
    # 6. FIX
    fix_throughput_orders: int  # the one-topic backlog one leader drains
    fix_idle_trades: int  # placed one at a time
    fix_bursts: int  # the demo's 30-trade burst, this many times


QUICK = Profile(
    name="quick",
    customers=400,
    placement_concurrency=(4, 16),
    placement_seconds=5,
    placement_warmup=1,
    latency_seconds=8,
    profile_seconds=5,
    pgbench_seconds=4,
    pgbench_scale=16,
    relay_rows=20000,
    relay_lag_rate=100,
    relay_lag_seconds=5,
    e2e_topics=4,
    e2e_executors=3,
    e2e_latency_seconds=5,
    # The latency run at 0.5 x peak is the ramp's first step; a last step at 0.9 x
    # the capacity it showed (when it could not keep up) checks that rate.
    e2e_ramp_fractions=(),
    e2e_ramp_seconds=5,
    failover_kills=3,
    zombie_rounds=1,
    scale_topics=(8,),
    scale_executors=(1, 3),
    scale_trades=150,
    fix_throughput_orders=1000,
    fix_idle_trades=30,
    fix_bursts=2,
)

FULL = Profile(
    name="full",
    customers=2000,
    placement_concurrency=(1, 4, 8, 16, 32),
    placement_seconds=15,
    placement_warmup=3,
    latency_seconds=45,
    profile_seconds=15,
    pgbench_seconds=20,
    pgbench_scale=16,
    relay_rows=50000,
    relay_lag_rate=200,
    relay_lag_seconds=30,
    e2e_topics=4,
    e2e_executors=3,
    e2e_latency_seconds=45,
    e2e_ramp_fractions=(0.75, 1.0),  # after the latency run at 0.5
    e2e_ramp_seconds=20,
    failover_kills=20,
    zombie_rounds=3,
    scale_topics=(1, 2, 4, 8),
    scale_executors=(1, 2, 3),
    scale_trades=400,
    fix_throughput_orders=3000,
    fix_idle_trades=100,
    fix_bursts=5,
)
