"""The page's Markdown tables: targets, figures and their references, CPU per
trade, profiles, and each section's details.
"""

from __future__ import annotations

from benchmarks.report.figures import (
    FIGURES,
    FIXED_REFERENCES,
    PROFILES,
    _cpu_windows,
)
from benchmarks.report.values import _fmt, _get, _pct


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
        for name, group in (profile.get("groups") or {}).items():
            if not group.get("samples_focus"):
                continue
            busy = group.get("samples_busy")
            if busy is None:
                head = f"{name}: {group['samples_focus']} samples."
                rows = group.get("categories", [])
                frames = group.get("top_project_frames_inclusive", [])
            else:
                head = (
                    f"{name}: {group['samples_focus']} samples, {busy} of them "
                    f"working ({_pct(busy / group['samples_focus'])}; the rest "
                    "waiting for work: Kafka poll, socket, window). Where the "
                    "working samples go:"
                )
                rows = group.get("busy_categories", [])
                frames = group.get("busy_top_project_frames_inclusive", [])
            lines += [head, "", "| where | share |", "|---|---:|"]
            for row in rows[:6]:
                lines.append(f"| {row['name']} | {_pct(row['share'])} |")
            lines += ["", "Its project frames (inclusive, below the thread's own):", ""]
            # The frames every sample of the thread has (its run loop) say
            # nothing: the ones below them do.
            for row in [r for r in frames if r["share"] < 0.99][:8]:
                lines.append(f"- `{row['name']}` {_pct(row['share'])}")
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
    lines += _fix_details(results.get("fix"))
    return lines


def _fix_details(fix: dict | None) -> list[str]:
    if not fix:
        return []
    main = fix.get("main_system") or {}
    leader = fix.get("leader") or {}
    raw = fix.get("exchange_raw") or {}
    rate = raw.get("rate") or {}
    trip = raw.get("round_trip") or {}
    idle, burst = fix.get("idle") or {}, fix.get("burst") or {}
    cpu = (leader.get("cpu") or {}).get("cpu_ms_per_unit") or {}
    raw_cpu = (rate.get("cpu") or {}).get("cpu_ms_per_unit") or {}
    in_flight = leader.get("journaled_to_first_report") or {}
    lines = [
        "### 6. FIX (run between sections 3 and 4)",
        "",
        f"**One leader's acknowledgements.** A backlog of {leader.get('orders')} "
        f"orders on a one-topic system (FIX_WINDOW {leader.get('fix_window')}), "
        f"drained by one executor in {_fmt(leader.get('drain_s'))} s: "
        f"{_fmt(leader.get('acks_per_s'))} acks/s (the middle 80 %: "
        f"{_fmt(leader.get('acks_per_s_middle_80pct'))}/s), orders journaled at "
        f"{_fmt(leader.get('journaled_per_s'))}/s; journaled → first report p50 "
        f"{_fmt(in_flight.get('p50_ms'))} / p99 {_fmt(in_flight.get('p99_ms'))} ms "
        "(the wait in the window). CPU per order in the drain: executor "
        f"{_fmt(cpu.get('executors'))} ms, exchange_mock "
        f"{_fmt(cpu.get('exchange_mock'))} ms, PostgreSQL "
        f"{_fmt(cpu.get('PostgreSQL'))} ms. exchange_mock alone (a bare FIX "
        f"client, {raw.get('orders')} orders sent at once): "
        f"{_fmt(rate.get('acks_per_s'))} acks/s, {_fmt(raw_cpu.get('exchange_mock'))} "
        "ms of its CPU per order; one order at a time, order → first report p50 "
        f"{_fmt((trip.get('ack') or {}).get('p50_ms'))} / p99 "
        f"{_fmt((trip.get('ack') or {}).get('p99_ms'))} ms, → fill p50 "
        f"{_fmt((trip.get('fill') or {}).get('p50_ms'))} ms. Bound: "
        f"{fix.get('leader_bound', '—')}.",
        "",
        f"**Idle and the demo's burst** on the main system ({main.get('topics')} "
        f"topics, {main.get('executors')} executors, leadership "
        f"{main.get('leadership')}): {idle.get('count')} trades one at a time; "
        f"{burst.get('rounds')} bursts of {burst.get('trades_per_burst')} "
        f"(per burst: p99 {burst.get('round_p99_ms')} ms; acceptances spread over "
        f"{[r.get('accepted_over_ms') for r in burst.get('per_round', [])]} ms, the "
        "last fill after "
        f"{[r.get('drained_in_ms') for r in burst.get('per_round', [])]} ms). "
        "Statuses: idle "
        f"{idle.get('trade_statuses')}, bursts {burst.get('trade_statuses')}.",
        "",
        "| place → filled, and its stages (ms) | idle p50 | idle p99 | burst p50 "
        "| burst p99 |",
        "|---|---:|---:|---:|---:|",
        f"| **accepted → filled** | {_fmt(idle.get('p50_ms'))} | "
        f"{_fmt(idle.get('p99_ms'))} | {_fmt(burst.get('p50_ms'))} | "
        f"{_fmt(burst.get('p99_ms'))} |",
    ]
    for kind, prefix in (("stages", ""), ("hops", "… of the first stage: ")):
        burst_spans = {s["stage"]: s for s in burst.get(kind, [])}
        for stage in idle.get(kind, []):
            other = burst_spans.get(stage["stage"], {})
            lines.append(
                f"| {prefix}{stage['stage']} | {_fmt(stage.get('p50_ms'))} | "
                f"{_fmt(stage.get('p99_ms'))} | {_fmt(other.get('p50_ms'))} | "
                f"{_fmt(other.get('p99_ms'))} |"
            )
    lines += ["", "Before values (fixed references, not measured in this run):", ""]
    for key, unit in (
        ("serial_bound", "value_per_s"),
        ("before_idle_p50", "value_ms"),
        ("before_burst_p99", "value_ms"),
    ):
        ref = fix.get(key) or {}
        shown = _fmt(ref.get(unit), "/s" if unit == "value_per_s" else "ms")
        lines.append(f"- {shown}: {ref.get('source', '')}")
    lines.append("")
    return lines
