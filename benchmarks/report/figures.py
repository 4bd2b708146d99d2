"""The figure catalogue: which figures of a results file the page shows, and
where each is in the JSON (the figures table, the CPU windows, the profiles).
"""

from __future__ import annotations

from benchmarks.report.values import _get

# figure label, value path, unit, reference label, reference path, ratio path
FIGURES = [
    (
        "exchange_mock round trip p50 (GET, keep-alive)",
        "diagnostics.exchange_rtt_p50_ms",
        "ms",
        "PostgreSQL round trip p50 (SELECT 1)",
        "diagnostics.postgres_rtt_p50_ms",
        "diagnostics.exchange_vs_postgres_rtt_ratio",
    ),
    (
        "PlaceTrade/s (best concurrency)",
        "placement.placetrade_peak_tps",
        "/s",
        "pgbench tpcb-like, same clients",
        "placement.pgbench_tpcb_tps",
        "placement.placetrade_vs_pgbench_tpcb_ratio",
    ),
    (
        "PlaceTrade/s (best concurrency)",
        "placement.placetrade_peak_tps",
        "/s",
        "pgbench -f placement.sql (its own SQL), same clients",
        "placement.pgbench_placement_sql_tps",
        "placement.placetrade_vs_pgbench_placement_sql_ratio",
    ),
    (
        "placement.sql tps with NOTIFY",
        "placement.pgbench_placement_sql_tps",
        "/s",
        "placement.sql without NOTIFY",
        "placement.pgbench_placement_sql_no_notify_tps",
        "placement.placement_sql_notify_vs_no_notify_ratio",
    ),
    (
        "PlaceTrade/s, synchronous_commit=on",
        "placement.placetrade_peak_tps",
        "/s",
        "PlaceTrade/s, synchronous_commit=off",
        "placement.placetrade_async_commit_tps",
        "placement.placetrade_durability_tax_ratio",
    ),
    (
        "pgbench tpcb-like, synchronous_commit=on",
        "placement.pgbench_tpcb_tps",
        "/s",
        "pgbench tpcb-like, synchronous_commit=off",
        "placement.pgbench_tpcb_async_commit_tps",
        "placement.pgbench_durability_tax_ratio",
    ),
    (
        "PlaceTrade p99 at half peak",
        "placement.placetrade_half_peak_p99_ms",
        "ms",
        "its p50",
        "placement.placetrade_half_peak_p50_ms",
        "placement.placetrade_half_peak_p99_over_p50_ratio",
    ),
    (
        "relay rows/s (backlog drain)",
        "relay.relay_rows_per_s",
        "/s",
        "raw confluent-kafka producer (streaming)",
        "relay.raw_producer_msgs_per_s",
        "relay.relay_vs_raw_producer_ratio",
    ),
    (
        "raw producer, waiting for every batch of 500",
        "relay.raw_producer_flush_per_batch_msgs_per_s",
        "/s",
        "raw producer, streaming",
        "relay.raw_producer_msgs_per_s",
        "relay.raw_producer_flush_per_batch_vs_streaming_ratio",
    ),
    (
        "relay lag p99 (commit → broker append)",
        "relay.relay_lag_p99_ms",
        "ms",
        "naive 100 ms-polling relay p99",
        "relay.naive_relay_lag_p99_ms",
        "relay.relay_vs_naive_lag_p99_ratio",
    ),
    (
        "relay lag p50",
        "relay.relay_lag_p50_ms",
        "ms",
        "naive relay p50",
        "relay.naive_relay_lag_p50_ms",
        "relay.relay_vs_naive_lag_p50_ratio",
    ),
    (
        "place→filled p99 at half placement peak",
        "end_to_end.e2e_half_peak_p99_ms",
        "ms",
        "target bound",
        "end_to_end.e2e_target_p99_ms",
        "end_to_end.e2e_half_peak_p99_vs_target_ratio",
    ),
    (
        "place→filled p99 at half placement peak",
        "end_to_end.e2e_half_peak_p99_ms",
        "ms",
        "PlaceTrade alone p99 at half peak",
        "end_to_end.placetrade_half_peak_p99_ms",
        "end_to_end.e2e_half_peak_p99_vs_placetrade_p99_ratio",
    ),
    (
        "place→filled p50 at half placement peak",
        "end_to_end.e2e_half_peak_p50_ms",
        "ms",
        "PlaceTrade alone p50 at half peak",
        "end_to_end.placetrade_half_peak_p50_ms",
        "end_to_end.e2e_half_peak_p50_vs_placetrade_p50_ratio",
    ),
    (
        "max sustained trades/s end to end",
        "end_to_end.e2e_max_sustained_tps",
        "/s",
        "placement peak",
        "end_to_end.placement_peak_tps",
        "end_to_end.e2e_max_sustained_vs_placement_peak_ratio",
    ),
    (
        "orders acknowledged/s by one topic's leader (pipelined, backlog drain)",
        "fix.leader_acks_per_s",
        "/s",
        "exchange_mock's own rate (a bare FIX client, same exchange)",
        "fix.exchange_raw_acks_per_s",
        "fix.leader_vs_exchange_raw_ratio",
    ),
    (
        "orders acknowledged/s by one topic's leader (pipelined, backlog drain)",
        "fix.leader_acks_per_s",
        "/s",
        "before: the serial executor's bound (2026-11-29.json, fixed)",
        "fix.serial_bound.value_per_s",
        "fix.leader_vs_serial_bound_ratio",
    ),
    (
        "acceptance → filled p50 at idle",
        "fix.idle_p50_ms",
        "ms",
        "target bound",
        "fix.idle_target_p50_ms",
        "fix.idle_p50_vs_target_ratio",
    ),
    (
        "acceptance → filled p50 at idle",
        "fix.idle_p50_ms",
        "ms",
        "before the FIX executor (the issue's figure, fixed)",
        "fix.before_idle_p50.value_ms",
        "fix.idle_p50_vs_before_ratio",
    ),
    (
        "acceptance → filled p50 at idle",
        "fix.idle_p50_ms",
        "ms",
        "exchange_mock alone: order → fill p50 (bare FIX client)",
        "fix.exchange_raw_fill_p50_ms",
        "fix.idle_p50_vs_exchange_raw_fill_p50_ratio",
    ),
    (
        "the demo's 30-trade burst, place → filled p99",
        "fix.burst_p99_ms",
        "ms",
        "target bound",
        "fix.burst_target_p99_ms",
        "fix.burst_p99_vs_target_ratio",
    ),
    (
        "the demo's 30-trade burst, place → filled p99",
        "fix.burst_p99_ms",
        "ms",
        "before the FIX executor (the demo's print, fixed)",
        "fix.before_burst_p99.value_ms",
        "fix.burst_p99_vs_before_ratio",
    ),
    (
        "SIGKILL → successor's fill, p99",
        "failover.failover_p99_s",
        "s",
        "ZooKeeper session timeout",
        "failover.session_timeout_negotiated_s",
        "failover.failover_p99_vs_session_timeout_ratio",
    ),
    (
        "SIGKILL → successor's fill, p50",
        "failover.failover_p50_s",
        "s",
        "ZooKeeper session timeout",
        "failover.session_timeout_negotiated_s",
        "failover.failover_p50_vs_session_timeout_ratio",
    ),
    (
        "SIGSTOP → successor's fill, max",
        "failover.zombie_successor_max_s",
        "s",
        "ZooKeeper session timeout",
        "failover.session_timeout_negotiated_s",
        "failover.zombie_successor_max_vs_session_timeout_ratio",
    ),
    (
        "zombie writes after takeover",
        "failover.zombie_writes",
        "",
        "fixed bound",
        None,
        None,
    ),
    (
        "e2e trades/s, most executors, most topics",
        "scale.executor_scaling_to_tps",
        "/s",
        "fewest executors, most topics",
        "scale.executor_scaling_from_tps",
        "scale.executor_scaling_ratio",
    ),
]

FIXED_REFERENCES = {
    "failover.zombie_writes": "0",
}


CPU_WINDOWS = (
    ("placement.half_peak_cpu", "PlaceTrade, api alone, half peak"),
    ("end_to_end.half_peak_cpu", "trade end to end, half peak"),
    ("fix.idle.cpu", "FIX: trades one at a time (idle)"),
    ("fix.burst.cpu", "FIX: the demo's bursts"),
    ("fix.leader.cpu", "FIX: one leader drains a backlog (no api, no relay)"),
)
PROFILES = (
    (
        "placement.profile_api",
        "api (gunicorn workers, request threads) during PlaceTrade at half peak "
        "(a window of its own, after the unprofiled latency window)",
    ),
    ("relay.profile_relay", "relay (its run loop) while draining the backlog"),
    (
        "end_to_end.profile_executor",
        "executor leading the most topics (leader and FIX session threads), end to "
        "end at half peak",
    ),
    (
        "fix.profile.executor_profile",
        "FIX: the leader of one topic during idle trades and demo bursts on that "
        "topic (a window of its own)",
    ),
    (
        "fix.leader.profiled_drain.executor_profile",
        "FIX: one leader draining a backlog (a drain of its own, half the size)",
    ),
)


def _cpu_windows(results: dict) -> list[tuple[str, dict]]:
    windows = []
    for path, label in CPU_WINDOWS:
        window = _get(results, path)
        if window:
            windows.append((label, window))
    grid = _get(results, "scale.grid") or []
    if grid:
        top = max(p["topics"] for p in grid)
        points = sorted(
            (p for p in grid if p["topics"] == top and p.get("cpu")),
            key=lambda p: p["executors"],
        )
        if points:
            for point in (points[0], points[-1]) if len(points) > 1 else points:
                windows.append(
                    (
                        f"scale burst, {top} topics x {point['executors']} executors",
                        point["cpu"],
                    )
                )
    return windows
