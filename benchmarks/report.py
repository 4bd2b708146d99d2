"""Results JSON → BENCHMARKS.md (tables, targets, PNG plots embedded).

``python -m benchmarks.report benchmarks/results/<name>.json`` regenerates the page
and the plots from a results file alone.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

from benchmarks.system import REPO_ROOT

PAGE = REPO_ROOT / "BENCHMARKS.md"
SECTION_ORDER = ("diagnostics", "placement", "relay", "end_to_end", "failover", "scale")


# -- targets --------------------------------------------------------------------


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


# -- formatting -----------------------------------------------------------------


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        text = f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text}{(' ' + unit) if unit else ''}"


def _get(results: dict, path: str):
    """``a.b.0.c`` → results["a"]["b"][0]["c"], None where anything is missing."""
    node = results
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit():
            node = node[int(part)] if int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


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


def _figures_table(results: dict) -> list[str]:
    lines = [
        "| figure | value | reference | reference value | ratio |",
        "|---|---:|---|---:|---:|",
    ]
    for label, path, unit, ref_label, ref_path, ratio_path in FIGURES:
        value = _get(results, path)
        if value is None and (ref_path is None or _get(results, ref_path) is None):
            continue
        reference = (
            _fmt(_get(results, ref_path), unit)
            if ref_path
            else FIXED_REFERENCES.get(path, "")
        )
        ratio_name = ratio_path.split(".")[-1] if ratio_path else ""
        ratio_value = _get(results, ratio_path) if ratio_path else None
        ratio_text = (
            f"{_fmt(ratio_value)} <sub>`{ratio_name}`</sub>" if ratio_path else ""
        )
        lines.append(
            f"| {label} | {_fmt(value, unit)} | {ref_label} | {reference} | "
            f"{ratio_text} |"
        )
    return lines


def _targets_table(targets: list[dict]) -> list[str]:
    lines = [
        "| target | figure | reference (same run) | ratio / checked value | result |",
        "|---|---:|---:|---:|:---:|",
    ]
    for t in targets:
        verdict = {True: "✅ met", False: "❌ missed", None: "— not measured"}[
            t["passed"]
        ]
        unit = t.get("unit", "")
        figure = f"{_fmt(t.get('figure_value'), unit)} <sub>`{t['figure']}`</sub>"
        if t.get("reference"):
            reference = (
                f"{_fmt(t.get('reference_value'), unit)} <sub>`{t['reference']}`</sub>"
            )
        else:
            reference = "fixed bound"
        checked = t.get("checked", t["figure"]).split(".")[-1]
        lines.append(
            f"| {t['description']} | {figure} | {reference} | "
            f"{_fmt(t['value'])} {t['op']} {_fmt(t['threshold'])} "
            f"<sub>`{checked}`</sub> | {verdict} |"
        )
    return lines


# -- plots ------------------------------------------------------------------------


def _plots(results: dict, out_dir: Path, name: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, Path] = {}
    tag = " (QUICK smoke run, shared machine)" if results["run"]["quick"] else ""

    # Latency distributions (CDFs, log x).
    curves = [
        ("PlaceTrade at half peak", _get(results, "placement.half_peak.cdf")),
        ("place→filled at half peak", _get(results, "end_to_end.half_peak.cdf")),
        ("relay lag (commit→append)", _get(results, "relay.lag.cdf")),
        ("naive 100 ms relay lag", _get(results, "relay.naive_lag.cdf")),
    ]
    curves = [(label, c) for label, c in curves if c and c.get("ms")]
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for label, cdf in curves:
            xs = [max(0.05, x) for x in cdf["ms"]]
            ax.plot(xs, [q * 100 for q in cdf["q"]], marker=".", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("percentile")
        ax.axhline(99, color="grey", lw=0.6, ls=":")
        ax.axhline(50, color="grey", lw=0.6, ls=":")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("Latency distributions" + tag, fontsize=10)
        made["latency"] = _save(fig, out_dir / f"{name}-latency.png")

    # Placement sweep.
    sweep = _get(results, "placement.sweep")
    if sweep:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        xs = [p["concurrency"] for p in sweep]
        ax.plot(xs, [p["tps"] for p in sweep], marker="o", label="PlaceTrade/s (HTTP)")
        for label, path, style in [
            ("pgbench tpcb-like", "placement.pgbench_tpcb_tps", "--"),
            ("pgbench -f placement.sql", "placement.pgbench_placement_sql_tps", ":"),
        ]:
            value = _get(results, path)
            if value:
                ax.axhline(value, ls=style, color="grey")
                ax.annotate(
                    f"{label} @ c={_get(results, 'placement.pgbench_clients')}: "
                    f"{value:,.0f}",
                    (xs[0], value),
                    fontsize=8,
                    va="bottom",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("transactions/s (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Placement throughput vs concurrency" + tag, fontsize=10)
        made["placement"] = _save(fig, out_dir / f"{name}-placement.png")

    # Failover times.
    kills = _get(results, "failover.kills") or []
    zombies = _get(results, "failover.zombies") or []
    timeout = _get(results, "failover.session_timeout_negotiated_s")
    if kills or zombies:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        if kills:
            ax.plot(
                range(1, len(kills) + 1),
                [k["kill_to_filled_s"] for k in kills],
                "o",
                label="SIGKILL → successor's fill",
            )
        if zombies:
            ax.plot(
                range(1, len(zombies) + 1),
                [z["stop_to_filled_s"] for z in zombies],
                "s",
                label="SIGSTOP → successor's fill",
            )
        if timeout:
            ax.axhline(timeout, color="grey", ls="--", label="session timeout")
            ax.axhline(
                1.5 * timeout, color="red", ls=":", label="1.5 x timeout (target)"
            )
        ax.set_xlabel("round")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Failover" + tag, fontsize=10)
        made["failover"] = _save(fig, out_dir / f"{name}-failover.png")

    # Scaling curves.
    grid = _get(results, "scale.grid") or []
    if grid:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
        for topics in sorted({p["topics"] for p in grid}):
            points = sorted(
                (p for p in grid if p["topics"] == topics), key=lambda p: p["executors"]
            )
            left.plot(
                [p["executors"] for p in points],
                [p["e2e_tps"] or 0 for p in points],
                marker="o",
                label=f"{topics} topic{'s' if topics > 1 else ''}",
            )
        left.set_xlabel("executors")
        left.set_ylabel("end-to-end trades/s")
        left.set_xticks(sorted({p["executors"] for p in grid}))
        left.set_ylim(bottom=0)
        left.grid(True, alpha=0.3)
        left.legend(fontsize=8)
        left.set_title("Throughput vs executors" + tag, fontsize=9)
        labels = [f"{p['topics']}tx{p['executors']}e" for p in grid]
        xs = range(len(grid))
        left_bars = [p["leaders_max"] for p in grid]
        right.bar([x - 0.2 for x in xs], left_bars, width=0.4, label="most topics led")
        right.bar(
            [x + 0.2 for x in xs],
            [p["leaders_min"] for p in grid],
            width=0.4,
            label="fewest topics led",
        )
        right.plot(list(xs), [p["share"] for p in grid], "k_", ms=18, label="ceil(T/E)")
        right.set_xticks(list(xs))
        right.set_xticklabels(labels, rotation=45, fontsize=8)
        right.set_ylabel("topics led per executor")
        right.legend(fontsize=8)
        right.set_title("Leadership spread", fontsize=9)
        fig.tight_layout()
        made["scale"] = _save(fig, out_dir / f"{name}-scale.png")
    return made


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


# -- page -------------------------------------------------------------------------


def render(results_path: Path, page: Path = PAGE) -> Path:
    results = json.loads(results_path.read_text())
    name = results_path.stem
    results.setdefault("targets", evaluate_targets(results))
    plots = _plots(results, results_path.parent, name)
    page.write_text(_markdown(results, results_path, plots, page))
    return page


def _rel(path: Path, page: Path) -> str:
    try:
        return str(path.resolve().relative_to(page.resolve().parent))
    except ValueError:
        return str(path)


def _markdown(results: dict, results_path: Path, plots: dict, page: Path) -> str:
    run = results["run"]
    quick = run["quick"]
    lines = ["# Benchmarks", ""]
    lines.append(
        "Generated by `make bench` (`python -m benchmarks`) from "
        f"[`{_rel(results_path, page)}`]({_rel(results_path, page)}); "
        "regenerate the page with "
        f"`python -m benchmarks.report {_rel(results_path, page)}`."
    )
    lines.append("")
    lines += [
        "> **Shared, noisy machine.** "
        + (
            "This is a QUICK smoke run (`make bench QUICK=1`): short windows and "
            "few samples (percentiles of a few hundred points, p99 of 3 "
            "failovers). "
            if quick
            else ""
        )
        + "Measured on a 2-core machine shared with fault-injection suites that "
        "load it and restart PostgreSQL, Kafka and ZooKeeper. Read the ratios "
        "(each figure and its reference were measured minutes apart in the same "
        "run), not the absolute figures; a section during which a shared service "
        "restarted is marked below.",
        "",
    ]
    disturbed = {
        section: results[section]["disturbed_by_restart_of"]
        for section in SECTION_ORDER
        if isinstance(results.get(section), dict)
        and results[section].get("disturbed_by_restart_of")
    }
    if disturbed:
        lines += [
            "> ⚠ **Disturbed sections** (a shared service restarted while they "
            "ran, their figures include the outage): "
            + "; ".join(
                f"`{section}` ({', '.join(names)}"
                + (
                    ": it was interrupted and re-run from scratch once"
                    if results[section].get("retried_after")
                    else ""
                )
                + ")"
                for section, names in disturbed.items()
            ),
            "",
        ]
    machine = run.get("machine", {})
    lines += [
        f"- run `{run['run_id']}`, {run['started_at']} → {run['finished_at']} "
        f"({run['duration_s']:.0f} s), profile **{run['profile']}**"
        + (f", sections: {', '.join(run['sections'])}" if run.get("sections") else "")
        + (f"; code {_code(run)}" if run.get("git_commit") else ""),
        f"- machine: {machine.get('cpus')} CPUs, load average "
        f"{machine.get('loadavg_start')} at start, {machine.get('loadavg_end')} at "
        f"end; PostgreSQL {machine.get('postgres', '?')}; Python "
        f"{machine.get('python', '?')}",
        "- everything on loopback: the api (gunicorn, "
        f"{_get(results, 'placement.api_workers') or 2} workers x "
        f"{_get(results, 'placement.api_threads') or 8} threads), relay, executors, "
        "exchange_mock (quotes frozen), the load generator and the local "
        "PostgreSQL / Kafka / ZooKeeper / Redis all share the same CPUs",
    ]
    if results.get("errors"):
        lines.append("")
        lines.append("**Sections that failed in this run:**")
        for section, error in results["errors"].items():
            first = error.strip().splitlines()[-1] if error.strip() else error
            lines.append(f"- `{section}`: {first}")
    lines += ["", "## Targets", ""]
    lines += _targets_table(results["targets"])
    lines += [""]
    lines += _before_after(results, results_path, page)
    lines += ["## Figures and their references", ""]
    lines += _figures_table(results)
    lines += [""]
    for key, title in [
        ("latency", "Latency distributions"),
        ("placement", "Placement throughput"),
        ("failover", "Failover"),
        ("scale", "Scaling"),
    ]:
        if key in plots:
            lines += [f"### {title}", "", f"![{title}]({_rel(plots[key], page)})", ""]
    lines += _where_time_goes(results)
    lines += _details(results)
    lines += _method()
    return "\n".join(lines).rstrip() + "\n"


# -- where the time goes ------------------------------------------------------------

CPU_WINDOWS = (
    ("placement.half_peak_cpu", "PlaceTrade, api alone, half peak"),
    ("end_to_end.half_peak_cpu", "trade end to end, half peak"),
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
        "executor leading the most topics (leader threads), end to end at half peak",
    ),
)


def _pct(share) -> str:
    return "—" if share is None else f"{share * 100:.0f} %"


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


def _cpu_table(results: dict) -> list[str]:
    windows = _cpu_windows(results)
    if not windows:
        return []
    roles: list[str] = []
    for _, window in windows:
        for role in window.get("cpu_ms_per_unit", {}):
            if role not in roles:
                roles.append(role)
    header = "| CPU ms per trade | " + " | ".join(label for label, _ in windows) + " |"
    lines = [
        "### CPU per trade, by role",
        "",
        "CPU seconds (user + system, from /proc) each role used over the window, "
        "divided by the trades placed in it. PostgreSQL, Kafka and ZooKeeper serve "
        "every user of the shared stack, so their figures are upper bounds; "
        "processes that exit inside the window are not counted (a restart, or "
        "PostgreSQL backends closing, can leave a role at 0).",
        "",
        header,
        "|---|" + "---:|" * len(windows),
    ]
    for role in roles:
        cells = [_fmt((w.get("cpu_ms_per_unit") or {}).get(role)) for _, w in windows]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    lines.append(
        "| **trades in the window** | "
        + " | ".join(_fmt(w.get("units")) for _, w in windows)
        + " |"
    )
    lines.append(
        "| **machine busy (all CPUs)** | "
        + " | ".join(_pct(w.get("machine_busy_share")) for _, w in windows)
        + " |"
    )
    lines.append(
        "| CPU s used by processes outside this run | "
        + " | ".join(_fmt(w.get("other_processes_cpu_s")) for _, w in windows)
        + " |"
    )
    lines.append("")
    return lines


def _profile_tables(results: dict) -> list[str]:
    lines = []
    for path, title in PROFILES:
        profile = _get(results, path)
        if not profile:
            continue
        lines += [f"#### {title}", ""]
        if profile.get("error"):
            lines += [f"No profile: {profile['error']}", ""]
            continue
        lines += [
            f"py-spy, {profile.get('rate_hz')} Hz for {_fmt(profile.get('seconds'))} "
            f"s, idle samples included: {profile.get('samples_focus')} samples of "
            "the working threads. Category = innermost library frame.",
            "",
            "| where | share of samples |",
            "|---|---:|",
        ]
        for row in profile.get("categories", [])[:8]:
            lines.append(f"| {row['name']} | {_pct(row['share'])} |")
        lines += ["", "Top frames (innermost):", ""]
        for row in profile.get("top_frames", [])[:6]:
            lines.append(f"- `{row['name']}` {_pct(row['share'])}")
        lines.append("")
    return lines


def _share(results: dict, path: str, category_prefix: str):
    for row in _get(results, path + ".categories") or []:
        if row["name"].startswith(category_prefix):
            return row["share"]
    return None


def _stage(results: dict, prefix: str) -> dict:
    for stage in _get(results, "diagnostics.stages") or []:
        if stage["stage"].startswith(prefix):
            return stage
    return {}


def _analysis(results: dict) -> list[str]:
    """One paragraph per missed target, from this run's figures."""
    missed = {t["id"] for t in results.get("targets", []) if t["passed"] is False}
    if not missed:
        return []
    lines = ["### Why the missed targets are missed", ""]

    def fig(path: str) -> str:
        return _fmt(_get(results, path))

    place = _stage(results, "PlaceTrade")
    execute = _stage(results, "executor: one")
    rtt = _get(results, "diagnostics.exchange_rtt_p50_ms")
    pg_rtt = _get(results, "diagnostics.postgres_rtt_p50_ms")
    half_cpu = _get(results, "placement.half_peak_cpu") or {}
    e2e_cpu = _get(results, "end_to_end.half_peak_cpu") or {}
    if "placement_vs_pgbench" in missed:
        lines.append(
            "- **PlaceTrade/s vs pgbench.** The database is not the bound: "
            "PlaceTrade's own SQL through pgbench (`placement.sql`, same clients) "
            f"runs {_fmt(_get(results, 'placement.pgbench_placement_sql_tps'))}/s, "
            "and PlaceTrade over HTTP reaches "
            f"{fig('placement.placetrade_vs_pgbench_placement_sql_ratio')}"
            " of it. The bound is the api's Python per request: "
            f"{_fmt((half_cpu.get('cpu_ms_per_unit') or {}).get('api'))} ms of api "
            "CPU per PlaceTrade under load (in-process, unloaded: "
            f"{_fmt(place.get('cpu_ms_per_unit'))} ms CPU, "
            f"{_fmt(place.get('sql_per_unit'))} SQL statements, "
            f"{_fmt(place.get('redis_per_unit'))} Redis round trips, "
            f"{_fmt(place.get('http_per_unit'))} exchange request), on a machine "
            f"{_pct(half_cpu.get('machine_busy_share'))} busy. "
            "A tpcb-like transaction is five statements issued by C code. The api "
            "profile below shows where the request threads' wall time goes "
            "(PostgreSQL "
            f"{_pct(_share(results, 'placement.profile_api', 'PostgreSQL'))}, Redis "
            f"{_pct(_share(results, 'placement.profile_api', 'Redis'))}, exchange "
            f"HTTP {_pct(_share(results, 'placement.profile_api', 'exchange'))}): "
            "waits stretched by CPU contention. Done (see Before / after): one "
            "Redis round trip for both rate limits (sliding-window counters "
            "instead of DRF's timestamp lists), no exchange request per placement "
            "(the last price is reused for `QUOTE_MAX_AGE_SECONDS`), the customer "
            "loaded with the token, server-side parameter binding and prepared "
            "statements (PostgreSQL no longer parses and plans the same statements "
            "of every request). Next levers: the two TradeEvent rows in one insert "
            "(the timeline orders rows by a timestamp taken at insert, so the "
            "acceptance line would need its own), leaner middleware for /api "
            "(sessions, messages and CSRF only serve the admin); the rest is "
            "Django and DRF's own per-request Python, which a 2-core machine "
            "shared with the whole pipeline does not hide."
        )
    if "placement_tail" in missed:
        lines.append(
            "- **PlaceTrade tail.** p99 "
            f"{_fmt(_get(results, 'placement.placetrade_half_peak_p99_ms'))} ms vs "
            f"p50 {_fmt(_get(results, 'placement.placetrade_half_peak_p50_ms'))} "
            "ms at half peak: requests queue for a CPU. The peak is measured "
            "closed-loop; half of it offered open-loop for the whole window keeps "
            f"the 2 shared CPUs {_pct(half_cpu.get('machine_busy_share'))} busy "
            f"({_fmt(half_cpu.get('other_processes_cpu_s'))} CPU s of it in "
            "processes outside the roles listed, the api's PostgreSQL backends "
            "among them), and bursts of arrivals queue behind each other; a short "
            "window at the same fraction (`make bench QUICK=1`) shows a tail of "
            "about twice the p50."
        )
    if rtt is not None and ("placement_vs_pgbench" in missed or "e2e_p99" in missed):
        lines.append(_exchange_paragraph(results, rtt, pg_rtt, place, execute))
    if "relay_throughput" in missed:
        lines.append(
            "- **Relay vs raw producer.** The raw producer streams "
            f"{_fmt(_get(results, 'relay.raw_producer_msgs_per_s'))} msg/s "
            "(median of three runs); waiting for every batch of 500 costs even it "
            "(ratio "
            f"{fig('relay.raw_producer_flush_per_batch_vs_streaming_ratio')}"
            "). The relay's read loop: its own code (produce calls into "
            "librdkafka, building each message) "
            f"{_pct(_share(results, 'relay.profile_relay', 'project'))}, PostgreSQL "
            "(SELECT the next batch) "
            f"{_pct(_share(results, 'relay.profile_relay', 'PostgreSQL'))}. Done: "
            "up to 4 batches in flight, each read past the highest id produced "
            "(no flush per batch); stamps on a second connection and thread, "
            "without waiting for the WAL flush (a lost stamp only republishes); "
            "the batch read pinned to the unpublished-tail index (with the stale "
            "statistics of a burst the planner chose a seq scan and sort: 30-60 ms "
            "per batch instead of 1 ms); the payload read as text and wrapped in "
            "Python. What is left is per row: PostgreSQL's UPDATE that stamps it "
            "(a new row version and an index entry), a produce() call, and the "
            "Kafka broker, on the same 2 CPUs as the relay."
        )
    if "relay_lag" in missed:
        lines.append(
            "- **Relay lag.** p99 "
            f"{_fmt(_get(results, 'relay.relay_lag_p99_ms'))} ms vs the naive "
            f"poller's {_fmt(_get(results, 'relay.naive_relay_lag_p99_ms'))} ms; "
            f"p50 {_fmt(_get(results, 'relay.relay_lag_p50_ms'))} ms shows NOTIFY "
            "works: the tail is the batch's flush (acks=all, linger) and CPU "
            "contention, not polling."
        )
    if "e2e_p99" in missed:
        lines.append(_e2e_paragraph(results, e2e_cpu, execute))
    if "executor_scaling" in missed:
        lines.append(
            "- **Executor scaling.** At the most topics, going from the fewest to "
            "the most executors changed end-to-end throughput by a factor "
            f"{_fmt(_get(results, 'scale.executor_scaling_ratio'))}: the executors "
            "do not run out of parallelism (one thread per led topic already) but "
            "share the same 2 CPUs with the api, PostgreSQL and Kafka (machine "
            "busy during those bursts: "
            + ", ".join(
                f"{label.rsplit(', ', 1)[-1]} {_pct(window.get('machine_busy_share'))}"
                for label, window in _cpu_windows(results)
                if label.startswith("scale burst")
            )
            + "; executor CPU per trade: "
            + ", ".join(
                f"{label.rsplit(', ', 1)[-1]} "
                f"{_fmt((window.get('cpu_ms_per_unit') or {}).get('executors'))} ms"
                for label, window in _cpu_windows(results)
                if label.startswith("scale burst")
            )
            + "). More executor processes add ZooKeeper sessions, Kafka consumers "
            "and their polling, not CPU."
        )
    if "failover_p99" in missed:
        lines.append(
            "- **Failover.** The successor is elected when ZooKeeper expires the "
            "killed leader's session; the rest is the successor's assignment, "
            "log-on and first order."
        )
    lines.append("")
    return lines


# An exchange_mock round trip above this is the delayed-ACK stall (Nagle) that
# exchange_mock's TCP_NODELAY (bdc8c85) removed: ~40 ms per call.
SLOW_EXCHANGE_RTT_MS = 10.0


def _exchange_paragraph(
    results: dict, rtt: float, pg_rtt, place: dict, execute: dict
) -> str:
    head = (
        f"- **exchange_mock round trip.** p50 {_fmt(rtt)} ms against "
        f"PostgreSQL's {_fmt(pg_rtt)} ms on the same loopback (ratio "
        f"{_fmt(_get(results, 'diagnostics.exchange_vs_postgres_rtt_ratio'))}). "
    )
    if rtt >= SLOW_EXCHANGE_RTT_MS:
        return head + (
            "That is the delayed-ACK stall: exchange_mock's handler writes the "
            "headers and the body of a response separately, and without "
            "TCP_NODELAY the body waits for the client's delayed ACK (~40 ms). "
            "Every PlaceTrade pays it once (the quote) and every executor message "
            "once (the order), in series per topic. Check that "
            "`disable_nagle_algorithm = True` on `ExchangeRequestHandler` "
            "(exchange_mock/server.py) is still in force."
        )
    shares = []
    for what, stage in (("an executor message", execute), ("a PlaceTrade", place)):
        wall = stage.get("wall_ms_per_unit")
        calls = stage.get("http_per_unit") or 0
        if wall:
            shares.append(
                f"{_pct(min(1.0, rtt * calls / wall))} of {what}'s unloaded wall "
                f"time ({_fmt(wall)} ms)"
            )
    return head + (
        "No longer a bound (exchange_mock has TCP_NODELAY since bdc8c85): "
        + (" and ".join(shares) if shares else "a small share of each unit")
        + "."
    )


def _whole_trade_window(results: dict) -> tuple[str, dict, dict] | None:
    """The scale burst at the most topics with the most executors: its CPU window
    spans every trade's placement and fill, so its CPU per trade is a whole
    trade's (the end-to-end half-peak window counts trades placed, most of them
    not yet executed when it closes)."""
    grid = _get(results, "scale.grid") or []
    points = [p for p in grid if p.get("cpu") and p.get("e2e_tps")]
    if not points:
        return None
    top = max(p["topics"] for p in points)
    point = max((p for p in points if p["topics"] == top), key=lambda p: p["executors"])
    return f"{top} topics x {point['executors']} executors", point, point["cpu"]


def _e2e_paragraph(results: dict, e2e_cpu: dict, execute: dict) -> str:
    sustained = _get(results, "end_to_end.e2e_max_sustained_tps")
    offered = _get(results, "end_to_end.half_peak.offered_rate")
    topics = _get(results, "end_to_end.topics")
    cpus = _get(results, "run.machine.cpus") or 2
    parts = []
    if sustained is None:
        parts.append(
            f"Half the placement peak ({_fmt(offered)}/s) is above what the whole "
            "pipeline sustains (no step of the ramp was sustained in this run), so "
            "trades queue in the topics and the latency is the queue's."
        )
    elif offered is not None and sustained < offered:
        parts.append(
            f"Half the placement peak ({_fmt(offered)}/s) is above what the whole "
            f"pipeline sustains ({_fmt(sustained)}/s measured, "
            f"{_fmt(sustained / offered)} of it), so trades queue in the topics "
            "and the latency is the queue's: p50 "
            f"{_fmt(_get(results, 'end_to_end.e2e_half_peak_p50_ms'))} ms, p99 "
            f"{_fmt(_get(results, 'end_to_end.e2e_half_peak_p99_ms'))} ms."
        )
    else:
        parts.append(
            f"The pipeline sustains {_fmt(sustained)}/s, at least the offered "
            f"{_fmt(offered)}/s, so the p99 is not a growing queue: it is one "
            "trade's path (placement, relay, executor, exchange, settlement) "
            "stretched by CPU contention."
        )
    steps = [s for s in _get(results, "end_to_end.ramp") or [] if s.get("sustained")]
    if steps:
        best = max(steps, key=lambda s: s["offered_rate"])
        bound = _get(results, "end_to_end.e2e_target_p99_ms") or 100.0
        within = (best.get("p99_ms") or math.inf) <= bound
        parts.append(
            f"At the highest sustained step of the ramp ({_fmt(best['offered_rate'])}"
            f"/s offered) place→filled is p50 {_fmt(best.get('p50_ms'))} ms, p99 "
            f"{_fmt(best.get('p99_ms'))} ms"
            + (
                f", within the {_fmt(bound)} ms bound: the miss is the pipeline's "
                "throughput, not one trade's path."
                if within
                else f", still above the {_fmt(bound)} ms bound."
            )
        )
    whole = _whole_trade_window(results)
    if whole:
        label, point, window = whole
        per = {
            role: ms
            for role, ms in (window.get("cpu_ms_per_unit") or {}).items()
            if isinstance(ms, int | float)
        }
        total = sum(per.values())
        ranked = sorted(per.items(), key=lambda kv: -kv[1])
        if total:
            parts.append(
                f"A whole trade (scale burst, {label}: every trade placed, "
                "published, executed and settled inside the CPU window) costs "
                f"{_fmt(total)} ms of CPU — "
                + ", ".join(f"{role} {_fmt(ms)}" for role, ms in ranked[:4])
                + f" — a ceiling of {_fmt(cpus * 1000 / total)} trades/s on {cpus} "
                f"CPUs; that burst reached {_fmt(point['e2e_tps'])}/s with the "
                f"machine {_pct(window.get('machine_busy_share'))} busy: the "
                "pipeline is CPU-bound. At half peak the api also places "
                f"{_fmt(_get(results, 'end_to_end.ramp.0.placed_tps'))}/s "
                f"({_fmt((e2e_cpu.get('roles_cpu_s') or {}).get('api'))} CPU s of "
                f"the window's {_fmt(e2e_cpu.get('machine_busy_cpu_s'))}) and "
                f"processes outside this run took "
                f"{_fmt(e2e_cpu.get('other_processes_cpu_s'))} CPU s, so the "
                "executors get less."
            )
    profile = "end_to_end.profile_executor"
    exchange_share = _share(results, profile, "exchange")
    wall = execute.get("wall_ms_per_unit")
    parts.append(
        "An executor message is "
        f"{_fmt(execute.get('sql_per_unit'))} SQL statements in "
        f"{_fmt(execute.get('commits_per_unit'))} fenced transactions (each opens "
        "with the epoch check `SELECT … FOR SHARE` and ends with a commit; the "
        "second also writes the offset) and one exchange request (unloaded: "
        f"{_fmt(wall)} ms wall, {_fmt(execute.get('cpu_ms_per_unit'))} ms CPU"
        + (
            f", at most {_fmt(1000 / wall)} messages/s per topic, "
            f"{_fmt(topics * 1000 / wall)}/s over {topics} topics"
            if wall and topics
            else ""
        )
        + "); the executor profile shows its leader threads in PostgreSQL "
        f"{_pct(_share(results, profile, 'PostgreSQL'))}, the Django ORM "
        f"{_pct(_share(results, profile, 'Django ORM'))} and exchange HTTP "
        f"{_pct(exchange_share)} of the time."
    )
    exchange_minor = exchange_share is not None and exchange_share < 0.2
    if whole and execute.get("cpu_ms_per_unit"):
        loaded = (whole[2].get("cpu_ms_per_unit") or {}).get("executors")
        if isinstance(loaded, int | float):
            parts.append(
                f"In that burst the executors spent {_fmt(loaded)} ms of CPU per "
                f"trade, {_fmt(loaded / execute['cpu_ms_per_unit'])} x the "
                "in-process cost of its message (a figure that itself varies "
                "from run to run with warm-up). The rest is "
                "outside a message's own path: the report feed's long-polls, the "
                "Kafka client and thread switches, which this run does not "
                "measure apart."
            )
    parts.append(
        "Done (see Before / after): settlement writes each kind of row once "
        "(executor message: 28 → 18 statements), consecutive placements of a poll "
        "share one fenced transaction per phase, the report feed no longer books "
        "the leader's own fills a second time, Kafka offset hints at most once a "
        "second, the consumer waits for one message and takes what is already "
        "fetched (librdkafka's consume(16, 0.2) had held every trade up to 200 ms "
        "at low load), server-side prepared statements. Next levers: "
        + (
            "(1) pipelining exchange requests per topic (several orders in "
            "flight, settled together): exchange HTTP is "
            f"{_pct(exchange_share)} of the leader's time, so it would shorten "
            "a topic's serial path but not lower the CPU ceiling; (2) the "
            "remaining ORM statements of a settlement as a few hand-written ones."
            if exchange_minor
            else "(1) pipeline exchange requests per topic (several orders in "
            "flight, settled together): exchange HTTP is "
            f"{_pct(exchange_share)} of the leader's time; (2) the remaining ORM "
            "statements of a settlement as a few hand-written ones."
        )
    )
    return "- **End-to-end p99.** " + " ".join(parts)


def _where_time_goes(results: dict) -> list[str]:
    body = _analysis(results) + _cpu_table(results) + _profile_tables(results)
    if not body:
        return []
    return ["## Where the time goes", "", *body]


# -- before / after ------------------------------------------------------------------

CHANGES_FILE = "changes.json"

# Figures shown under the targets in a before/after comparison: the ones a change
# is expected to move. (label, path or stage prefix, unit)
BEFORE_AFTER_FIGURES = (
    ("exchange_mock round trip p50", "diagnostics.exchange_rtt_p50_ms", "ms"),
    ("PlaceTrade in-process, wall per trade", "stage:PlaceTrade", "ms"),
    ("executor message in-process, wall per message", "stage:executor: one", "ms"),
    ("PlaceTrade/s (best concurrency)", "placement.placetrade_peak_tps", "/s"),
    ("place→filled p50 at half peak", "end_to_end.e2e_half_peak_p50_ms", "ms"),
    ("place→filled p99 at half peak", "end_to_end.e2e_half_peak_p99_ms", "ms"),
    ("max sustained trades/s end to end", "end_to_end.e2e_max_sustained_tps", "/s"),
    ("executor CPU per trade, end to end", "cpu:end_to_end:executors", "ms"),
    ("machine busy, end to end at half peak", "busy:end_to_end", ""),
)


def comparisons_for(results_path: Path) -> list[dict]:
    """The entries of ``changes.json`` (beside the results file) whose ``after``
    is this results file, each with its ``before`` results loaded; entries whose
    before file is missing are skipped.

    changes.json: ``{"comparisons": [{"before": "<file>.json", "after":
    "<file>.json", "changes": [{"commit": "<sha>", "subject": "..."}]}]}`` — the
    runs are named, never their figures: those are read from the files."""
    changes = results_path.parent / CHANGES_FILE
    if not changes.exists():
        return []
    out = []
    for entry in json.loads(changes.read_text()).get("comparisons", []):
        if entry.get("after") != results_path.name:
            continue
        before_path = results_path.parent / entry["before"]
        if not before_path.exists():
            continue
        out.append(
            {
                **entry,
                "before_path": before_path,
                "before_results": json.loads(before_path.read_text()),
            }
        )
    return out


def _ba_value(results: dict, spec: str):
    kind, _, rest = spec.partition(":")
    if kind == "stage":
        return _stage(results, rest).get("wall_ms_per_unit")
    if kind == "cpu":
        section, role = rest.split(":")
        return (_get(results, f"{section}.half_peak_cpu.cpu_ms_per_unit") or {}).get(
            role
        )
    if kind == "busy":
        return _get(results, f"{rest}.half_peak_cpu.machine_busy_share")
    return _get(results, spec)


def _ba_fmt(value, unit: str, spec: str) -> str:
    return _pct(value) if spec.startswith("busy:") else _fmt(value, unit)


def _code(run: dict) -> str:
    text = f"`{run['git_commit']}`"
    changed = run.get("git_uncommitted") or []
    if changed:
        shown = ", ".join(changed[:8]) + (", …" if len(changed) > 8 else "")
        text += f" with uncommitted changes to {shown}"
    return text


def _verdict(passed) -> str:
    return {True: "✅ met", False: "❌ missed", None: "— not measured"}[passed]


def _change_factor(before, after) -> str:
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return "—"
    if before == after:
        return "="
    if before == 0 or after == 0:
        return "—"
    return f"x {_fmt(after / before)}"


def _disturbance(results: dict) -> str:
    parts = [
        f"{section} ({', '.join(results[section]['disturbed_by_restart_of'])})"
        for section in SECTION_ORDER
        if isinstance(results.get(section), dict)
        and results[section].get("disturbed_by_restart_of")
    ]
    return "; ".join(parts) if parts else "none"


def _before_after(results: dict, results_path: Path, page: Path) -> list[str]:
    lines: list[str] = []
    for comparison in comparisons_for(results_path):
        before = comparison["before_results"]
        before_path = comparison["before_path"]
        before_targets = {
            t["id"]: t for t in before.get("targets") or evaluate_targets(before)
        }
        brun, arun = before["run"], results["run"]
        lines += [
            "## Before / after",
            "",
            f"Before: [`{_rel(before_path, page)}`]({_rel(before_path, page)}) "
            f"(run `{brun['run_id']}`, {brun['started_at']}, profile "
            f"{brun['profile']}"
            + (f", code {_code(brun)}" if brun.get("git_commit") else "")
            + "). After: this run "
            f"(run `{arun['run_id']}`, {arun['started_at']}, profile "
            f"{arun['profile']}"
            + (f", code {_code(arun)}" if arun.get("git_commit") else "")
            + "). What changed between them (listed in "
            f"`{_rel(results_path.parent / CHANGES_FILE, page)}`):",
            "",
        ]
        for change in comparison.get("changes", []):
            lines.append(f"- `{change['commit']}` {change['subject']}")
        lines += [
            "",
            "Two runs minutes apart on the shared machine: a change in a figure "
            "the commit does not touch is noise (or the other suites' load). "
            f"Disturbed sections — before: {_disturbance(before)}; after: "
            f"{_disturbance(results)}.",
            "",
            "| target | before: figure | after: figure | before: checked | "
            "after: checked | result before → after |",
            "|---|---:|---:|---:|---:|:---:|",
        ]
        for t in results["targets"]:
            b = before_targets.get(t["id"], {})
            unit = t.get("unit", "")
            lines.append(
                f"| {t['description']} | {_fmt(b.get('figure_value'), unit)} | "
                f"{_fmt(t.get('figure_value'), unit)} | {_fmt(b.get('value'))} | "
                f"{_fmt(t['value'])} | {_verdict(b.get('passed'))} → "
                f"{_verdict(t['passed'])} |"
            )
        lines += [
            "",
            "| figure behind them | before | after | after ÷ before |",
            "|---|---:|---:|---:|",
        ]
        for label, spec, unit in BEFORE_AFTER_FIGURES:
            b, a = _ba_value(before, spec), _ba_value(results, spec)
            if b is None and a is None:
                continue
            lines.append(
                f"| {label} | {_ba_fmt(b, unit, spec)} | {_ba_fmt(a, unit, spec)} | "
                f"{_change_factor(b, a)} |"
            )
        lines.append("")
    return lines


def _details(results: dict) -> list[str]:
    lines = ["## Details", ""]
    diagnostics = results.get("diagnostics")
    if diagnostics:
        lines += [
            "### 0. Cost of one unit of work (diagnostics, in-process, no load)",
            "",
            "| stage | SQL | commits | Redis | HTTP | wall ms | CPU ms |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for st in diagnostics.get("stages", []):
            lines.append(
                f"| {st['stage']} | {_fmt(st['sql_per_unit'])} | "
                f"{_fmt(st['commits_per_unit'])} | {_fmt(st['redis_per_unit'])} | "
                f"{_fmt(st['http_per_unit'])} | {_fmt(st['wall_ms_per_unit'])} | "
                f"{_fmt(st['cpu_ms_per_unit'])} |"
            )
        rtt = diagnostics.get("exchange_rtt")
        if rtt:
            lines += [
                "",
                f"exchange_mock round trip (GET /healthz, keep-alive): p50 "
                f"{_fmt(rtt.get('p50_ms'))} ms, p90 {_fmt(rtt.get('p90_ms'))} ms; "
                f"PostgreSQL round trip (SELECT 1) p50 "
                f"{_fmt(diagnostics.get('postgres_rtt_p50_ms'))} ms; commit of a "
                f"one-row insert p50 {_fmt(diagnostics.get('postgres_commit_p50_ms'))}"
                " ms.",
            ]
        lines.append("")
    placement = results.get("placement")
    if placement:
        lines += [
            "### 1. Placement",
            "",
            "Closed-loop sweep (each point: "
            f"{_fmt(placement.get('window_seconds'))} s window after warm-up, "
            f"{placement.get('customers')} customers round-robin):",
            "",
            "| clients | PlaceTrade/s | p50 ms | p99 ms | statuses |",
            "|---:|---:|---:|---:|---|",
        ]
        for p in placement.get("sweep", []):
            lines.append(
                f"| {p['concurrency']} | {_fmt(p['tps'])} | {_fmt(p['p50_ms'])} | "
                f"{_fmt(p['p99_ms'])} | {p.get('statuses', '')} |"
            )
        half = placement.get("half_peak", {})
        lines += [
            "",
            f"Open loop at half the peak ({_fmt(half.get('offered_rate'))}/s offered, "
            f"{_fmt(half.get('achieved_tps'))}/s achieved, {half.get('count')} "
            f"samples): p50 {_fmt(half.get('p50_ms'))} ms, p90 "
            f"{_fmt(half.get('p90_ms'))} ms, p99 {_fmt(half.get('p99_ms'))} ms, "
            f"max {_fmt(half.get('max_ms'))} ms. pgbench: scale "
            f"{placement.get('pgbench_scale')}, {placement.get('pgbench_clients')} "
            "clients, `-M prepared`.",
            "",
        ]
    relay = results.get("relay")
    if relay:
        lag, naive = relay.get("lag", {}), relay.get("naive_lag", {})
        lines += [
            "### 2. Relay",
            "",
            f"- backlog of {relay.get('relay_rows')} rows drained at "
            f"{_fmt(relay.get('relay_rows_per_s'))} rows/s; raw producer "
            f"{_fmt(relay.get('raw_producer_msgs_per_s'))} msg/s streaming "
            f"(median of {relay.get('raw_producer_runs_msgs_per_s')}), "
            f"{_fmt(relay.get('raw_producer_flush_per_batch_msgs_per_s'))} msg/s "
            f"flushing every {relay.get('batch_size')}; "
            f"message {relay.get('message_bytes')} bytes",
            f"- lag at {lag.get('offered_rate')} rows/s ({lag.get('count')} rows, "
            f"timestamps {lag.get('timestamp_type')}): relay p50 "
            f"{_fmt(lag.get('p50_ms'))} / p99 {_fmt(lag.get('p99_ms'))} / max "
            f"{_fmt(lag.get('max_ms'))} ms; naive p50 {_fmt(naive.get('p50_ms'))} / "
            f"p99 {_fmt(naive.get('p99_ms'))} / max {_fmt(naive.get('max_ms'))} ms; "
            f"commit → published_at stamp p99: relay "
            f"{_fmt((lag.get('stamp_lag') or {}).get('p99_ms'))} ms",
            "",
        ]
    e2e = results.get("end_to_end")
    if e2e:
        half = e2e.get("half_peak", {})
        lines += [
            "### 3. End to end",
            "",
            f"{e2e.get('topics')} topics, {e2e.get('executors')} executors, "
            f"{e2e.get('relays')} relay; leadership {e2e.get('leadership')}. At "
            f"{_fmt(half.get('offered_rate'))}/s offered: {half.get('count')} fills, "
            f"p50 {_fmt(half.get('p50_ms'))} / p99 {_fmt(half.get('p99_ms'))} / "
            f"p99.9 {_fmt(half.get('p999_ms'))} / max {_fmt(half.get('max_ms'))} ms; "
            f"trade statuses {half.get('trade_statuses')}.",
            "",
            "| step | offered/s | placed/s | filled/s | unfilled at end | p50 ms "
            "| p99 ms | sustained |",
            "|---|---:|---:|---:|---:|---:|---:|:---:|",
        ]
        for s in e2e.get("ramp", []):
            lines.append(
                f"| {s.get('label', '')} | {_fmt(s['offered_rate'])} | "
                f"{_fmt(s['placed_tps'])} | "
                f"{_fmt(s['filled_tps'])} | {s['unfilled_at_end']} | "
                f"{_fmt(s.get('p50_ms'))} | {_fmt(s.get('p99_ms'))} | "
                f"{_fmt(s['sustained'])} |"
            )
        lines.append("")
    failover = results.get("failover")
    if failover:
        lines += [
            "### 4. Failover",
            "",
            f"Session timeout {failover.get('session_timeout_configured_s')} s "
            f"configured, {failover.get('session_timeout_negotiated_s')} s "
            f"negotiated; {failover.get('kill_count')} kills.",
            "",
            "| # | topic | killed | successor | kill→elected s | kill→filled s |",
            "|---:|---|---|---|---:|---:|",
        ]
        for i, k in enumerate(failover.get("kills", []), 1):
            lines.append(
                f"| {i} | {k['topic'].rsplit('.', 1)[-1]} | {k['killed']} | "
                f"{k['successor']} | {_fmt(k['kill_to_elected_s'])} | "
                f"{_fmt(k['kill_to_filled_s'])} |"
            )
        if failover.get("zombies"):
            lines += [
                "",
                "| zombie | stopped s | stop→elected s | stop→filled s | writes after "
                "takeover |",
                "|---|---:|---:|---:|---:|",
            ]
            for z in failover["zombies"]:
                lines.append(
                    f"| {z['zombie']} | {_fmt(z['stopped_s'])} | "
                    f"{_fmt(z['stop_to_elected_s'])} | {_fmt(z['stop_to_filled_s'])} "
                    f"| {z['zombie_writes']} |"
                )
        lines.append("")
    scale = results.get("scale")
    if scale:
        lines += [
            "### 5. Scale",
            "",
            (
                f"Bursts of {scale.get('burst_seconds')} s"
                if scale.get("burst_seconds")
                else "Bursts of a fixed number of trades (column trades)"
            )
            + f" closed loop at {scale.get('burst_concurrency')} clients per point; "
            "the CPU window of a point spans its placement and the drain to its "
            "last fill.",
            "",
            "| topics | executors | trades | placed/s | fills/s | e2e/s | leaders "
            "per executor | ceil(T/E) |",
            "|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for p in scale.get("grid", []):
            spread = ", ".join(str(v) for v in sorted(p["leadership"].values()))
            lines.append(
                f"| {p['topics']} | {p['executors']} | {p.get('trades')} | "
                f"{_fmt(p.get('placed_tps'))} | {_fmt(p.get('fill_tps'))} | "
                f"{_fmt(p.get('e2e_tps'))} | {spread} | {p['share']} |"
            )
        lines.append("")
    return lines


def _method() -> list[str]:
    return [
        "## Method",
        "",
        "- **Isolation.** Each run creates a database `bench_<runid>` (migrated with "
        "`manage.py migrate`) and a pgbench scratch database on the local "
        "PostgreSQL, topics `bench-<runid>-*`, ZooKeeper root `/bench-<runid>`, cache "
        "prefix `bench-<runid>`, and removes all of them at the end (Ctrl-C "
        "included). Throttle limits are set out of reach; exchange quotes are "
        "frozen (`EXCHANGE_TICK_SECONDS=0`), so every market buy fills at once. "
        "Each section starts once no autovacuum worker runs (at most 120 s; the "
        "wait is `postgres_settle_s` in its results), so it does not measure the "
        "vacuum of what the section before it wrote.",
        "- **Load.** An asyncio HTTP/1.1 client with keep-alive connections; "
        "closed loop at N clients for throughput, open loop at a fixed rate for "
        "latency (measured from the scheduled send time, so queueing in the "
        "generator counts). Customers are used round-robin and hold 10⁹ USD.",
        "- **Placement.** Only exchange_mock and the api run. pgbench runs "
        "tpcb-like on its own scratch database and `benchmarks/placement.sql` "
        "(PlaceTrade's statements as the ORM issues them, NOTIFY after commit "
        "included) on the bench database, both `-M prepared`, same client count. "
        "Durability tax: `ALTER DATABASE … SET synchronous_commit = off` and an "
        "api restart; `PGOPTIONS=-c synchronous_commit=off` for pgbench.",
        "- **Relay.** The real relay process on its own topics (created with "
        "`message.timestamp.type=LogAppendTime`). Throughput: a backlog committed "
        "at once, rows ÷ (last `published_at` - commit). Lag: one row per "
        "transaction at a fixed rate, broker append time - commit time, read by a "
        "consumer. The naive reference (`benchmarks/relay.py: NaiveRelay`) polls "
        "every 100 ms.",
        "- **End to end.** created_at → filled_at of the trades placed by an open "
        "loop at half the placement peak; then a ramp of offered rates, a step "
        "being sustained while the api keeps ≥ 90 % of the offered rate and less "
        "than one second of trades is unfilled when it ends.",
        "- **Failover.** kill → filled_at of a trade placed right after the "
        "SIGKILL, for a customer of the killed leader's topic; a replacement "
        "executor is started and the next round waits for balanced leaders with a "
        "successor queued on every topic. Zombie: SIGSTOP past the session "
        "timeout, then SIGCONT; zombie writes = TradeEvent rows with its epoch "
        "created after its successor's elected_at.",
        "- **Scale.** Per topic count a fresh system; executors added one at a "
        "time; a closed-loop burst per point (see section 5).",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", type=Path)
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args()
    print(render(args.results, args.page))


if __name__ == "__main__":
    main()
