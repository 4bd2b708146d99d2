"""The targets a run is judged on, and their verdicts for one results dict.

``evaluate_targets`` is also what ``python -m benchmarks`` stores under
``"targets"`` in the results file, so a target's definition lives here alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.report.values import _get


@dataclass(frozen=True)
class Target:
    id: str
    description: str
    figure: str  # path in the results JSON
    reference: str | None  # path of its same-run reference (None: a fixed bound)
    checked: str  # the value the target is checked on (usually a *_ratio)
    op: str
    threshold: float
    unit: str = ""


TARGETS = [
    Target(
        "placement_vs_pgbench",
        "PlaceTrade/s ≥ 0.5 x pgbench tpcb-like tps at equal clients",
        "placement.placetrade_peak_tps",
        "placement.pgbench_tpcb_tps",
        "placement.placetrade_vs_pgbench_tpcb_ratio",
        ">=",
        0.5,
        "/s",
    ),
    Target(
        "placement_tail",
        "PlaceTrade p99 at half peak ≤ 5 x its p50",
        "placement.placetrade_half_peak_p99_ms",
        "placement.placetrade_half_peak_p50_ms",
        "placement.placetrade_half_peak_p99_over_p50_ratio",
        "<=",
        5.0,
        "ms",
    ),
    Target(
        "relay_throughput",
        "relay rows/s ≥ 0.5 x raw producer rate",
        "relay.relay_rows_per_s",
        "relay.raw_producer_msgs_per_s",
        "relay.relay_vs_raw_producer_ratio",
        ">=",
        0.5,
        "/s",
    ),
    Target(
        "relay_lag",
        "relay lag p99 ≤ 0.1 x naive 100 ms-polling relay's p99",
        "relay.relay_lag_p99_ms",
        "relay.naive_relay_lag_p99_ms",
        "relay.relay_vs_naive_lag_p99_ratio",
        "<=",
        0.1,
        "ms",
    ),
    Target(
        "e2e_p99",
        "end-to-end p99 ≤ 100 ms at half the placement peak (ratio: p99 ÷ 100 ms ≤ 1)",
        "end_to_end.e2e_half_peak_p99_ms",
        "end_to_end.e2e_target_p99_ms",
        "end_to_end.e2e_half_peak_p99_vs_target_ratio",
        "<=",
        1.0,
        "ms",
    ),
    Target(
        "fix_leader_acks",
        "one topic's leader acknowledges ≥ 1,000 orders/s, or ≥ 0.9 x exchange_mock's "
        "own rate if that is lower (ratio: leader ÷ that goal ≥ 1)",
        "fix.leader_acks_per_s",
        "fix.acks_goal_per_s",
        "fix.leader_vs_goal_ratio",
        ">=",
        1.0,
        "/s",
    ),
    Target(
        "fix_idle_p50",
        "acceptance → filled p50 at idle ≤ 10 ms (ratio: p50 ÷ 10 ms ≤ 1)",
        "fix.idle_p50_ms",
        "fix.idle_target_p50_ms",
        "fix.idle_p50_vs_target_ratio",
        "<=",
        1.0,
        "ms",
    ),
    Target(
        "fix_burst_p99",
        "the demo's 30-trade burst, place → filled p99 ≤ 100 ms (ratio: p99 ÷ 100 ms "
        "≤ 1)",
        "fix.burst_p99_ms",
        "fix.burst_target_p99_ms",
        "fix.burst_p99_vs_target_ratio",
        "<=",
        1.0,
        "ms",
    ),
    Target(
        "failover_p99",
        "failover p99 ≤ 1.5 x ZooKeeper session timeout",
        "failover.failover_p99_s",
        "failover.session_timeout_negotiated_s",
        "failover.failover_p99_vs_session_timeout_ratio",
        "<=",
        1.5,
        "s",
    ),
    Target(
        "zombie_writes",
        "zombie writes after its successor's election = 0",
        "failover.zombie_writes",
        None,
        "failover.zombie_writes",
        "==",
        0,
    ),
    Target(
        "executor_scaling",
        "1 → 3 executors at 8 topics raises end-to-end throughput (factor > 1)",
        "scale.executor_scaling_to_tps",
        "scale.executor_scaling_from_tps",
        "scale.executor_scaling_ratio",
        ">",
        1.0,
        "/s",
    ),
]


def evaluate_targets(results: dict) -> list[dict]:
    out = []
    for target in TARGETS:
        value = _get(results, target.checked)
        if value is None:
            passed = None
        elif target.op == ">=":
            passed = value >= target.threshold
        elif target.op == "<=":
            passed = value <= target.threshold
        elif target.op == ">":
            passed = value > target.threshold
        else:
            passed = value == target.threshold
        out.append(
            {
                "id": target.id,
                "description": target.description,
                "figure": target.figure,
                "figure_value": _get(results, target.figure),
                "reference": target.reference,
                "reference_value": (
                    _get(results, target.reference) if target.reference else None
                ),
                "unit": target.unit,
                "checked": target.checked,
                "value": value,
                "op": target.op,
                "threshold": target.threshold,
                "passed": passed,
            }
        )
    return out
