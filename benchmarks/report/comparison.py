"""Before / after: the earlier runs that changes.json names for a results file,
and the section comparing their targets and figures with this run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report.targets import evaluate_targets
from benchmarks.report.values import (
    SECTION_ORDER,
    _code,
    _fmt,
    _get,
    _pct,
    _rel,
    _stage,
)

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
    ("executor SQL per message, in a poll of 64", "sql:executor: a poll", ""),
    ("executor wall per message, in a poll of 64", "stage:executor: a poll", "ms"),
    ("executor SQL per report, 64 booked at once", "sql:executor: 64 fills", ""),
    ("executor wall per report, 64 booked at once", "stage:executor: 64 fills", "ms"),
    ("orders acknowledged/s, one topic's leader", "fix.leader_acks_per_s", "/s"),
    (
        "the same ÷ exchange_mock's own rate (same run)",
        "fix.leader_vs_exchange_raw_ratio",
        "",
    ),
    ("exchange_mock's own rate (bare FIX client)", "fix.exchange_raw_acks_per_s", "/s"),
    ("acceptance → filled p50 at idle", "fix.idle_p50_ms", "ms"),
    ("acceptance → filled p99 at idle", "fix.idle_p99_ms", "ms"),
    ("the demo's burst, place → filled p99", "fix.burst_p99_ms", "ms"),
    ("executor CPU per order, one leader's drain", "cpu:fix.leader:executor", "ms"),
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
    if kind == "sql":
        return _stage(results, rest).get("sql_per_unit")
    if kind == "cpu":
        section, role = rest.split(":")
        # "end_to_end": its half-peak window; "fix.leader": that result's own.
        window = f"{section}.cpu" if "." in section else f"{section}.half_peak_cpu"
        return (_get(results, f"{window}.cpu_ms_per_unit") or {}).get(role)
    if kind == "busy":
        return _get(results, f"{rest}.half_peak_cpu.machine_busy_share")
    return _get(results, spec)


def _ba_fmt(value, unit: str, spec: str) -> str:
    return _pct(value) if spec.startswith("busy:") else _fmt(value, unit)


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


def _loads(before: dict, after: dict) -> str:
    """The 1-minute load average at the start of each section both runs
    measured: how busy the shared machine was for each side of a figure."""
    pairs = [
        f"{section} {before[section]['loadavg_start'][0]:g} → "
        f"{after[section]['loadavg_start'][0]:g}"
        for section in SECTION_ORDER
        if (before.get(section) or {}).get("loadavg_start")
        and (after.get(section) or {}).get("loadavg_start")
    ]
    if not pairs:
        return ""
    return (
        " Load average at the start of each section, before → after: "
        + ", ".join(pairs)
        + "."
    )


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
            f"{_disturbance(results)}." + _loads(before, results),
            "",
            "| target | before: figure | after: figure | before: checked | "
            "after: checked | result before → after |",
            "|---|---:|---:|---:|---:|:---:|",
        ]
        skipped = []
        for t in results["targets"]:
            b = before_targets.get(t["id"], {})
            if b.get("value") is None and b.get("figure_value") is None:
                skipped.append(t["id"])  # the before run did not measure it
                continue
            unit = t.get("unit", "")
            lines.append(
                f"| {t['description']} | {_fmt(b.get('figure_value'), unit)} | "
                f"{_fmt(t.get('figure_value'), unit)} | {_fmt(b.get('value'))} | "
                f"{_fmt(t['value'])} | {_verdict(b.get('passed'))} → "
                f"{_verdict(t['passed'])} |"
            )
        if skipped:
            lines += [
                "",
                "Not measured by the before run: "
                + ", ".join(f"`{name}`" for name in skipped)
                + ".",
            ]
        lines += [
            "",
            "| figure behind them | before | after | after ÷ before |",
            "|---|---:|---:|---:|",
        ]
        for label, spec, unit in BEFORE_AFTER_FIGURES:
            b, a = _ba_value(before, spec), _ba_value(results, spec)
            if b is None:
                continue
            lines.append(
                f"| {label} | {_ba_fmt(b, unit, spec)} | {_ba_fmt(a, unit, spec)} | "
                f"{_change_factor(b, a)} |"
            )
        lines.append("")
    return lines
