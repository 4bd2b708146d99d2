"""1. Placement throughput: PlaceTrade commits/s through the real HTTP API at the
concurrency that maximises it, against pgbench on the same PostgreSQL with the same
number of clients (built-in tpcb-like, and PlaceTrade's own SQL), the durability tax
(synchronous_commit on ÷ off) beside pgbench's own, and PlaceTrade's latency at half
its peak rate (open loop).

Only exchange_mock and the api run during this measurement (no relay, no executor):
the api and PostgreSQL get the machine to themselves.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks import load
from benchmarks.context import Context
from benchmarks.profiling import CpuAccount, SpyRecorder
from benchmarks.util import cdf_ms, ratio, rnd, summary_ms

PLACEMENT_SQL = Path(__file__).with_name("placement.sql")
PGBENCH_TOPIC = "bench-pgbench"


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pgbench"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError("pgbench not found (apt-get install postgresql-client)")
    return candidates[-1]


def _pgbench(
    ctx: Context,
    args: list[str],
    *,
    url: str,
    log_name: str,
    sync_commit_off: bool = False,
    timeout: float = 600,
) -> dict:
    env = dict(os.environ)
    if sync_commit_off:
        env["PGOPTIONS"] = "-c synchronous_commit=off"
    argv = [pgbench_binary(), *args, url]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    log = ctx.run.log_dir / f"pgbench-{log_name}.log"
    log.write_text(f"$ {' '.join(argv[:-1])} <url>\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench {log_name} failed ({proc.returncode}); see {log}")
    out = proc.stdout + proc.stderr
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {
        "tps": rnd(float(tps.group(1)), 1) if tps else None,
        "latency_avg_ms": rnd(float(latency.group(1)), 3) if latency else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def pgbench_tpcb(ctx: Context, clients: int, *, sync_commit_off=False) -> dict:
    seconds = ctx.profile.pgbench_seconds
    ctx.progress.update(
        f"pgbench tpcb-like c={clients} {seconds}s"
        + (" synchronous_commit=off" if sync_commit_off else "")
    )
    return _pgbench(
        ctx,
        ["-c", str(clients), "-j", str(clients), "-T", str(seconds), "-M", "prepared"],
        url=ctx.run.pgbench_url,
        log_name=f"tpcb-c{clients}{'-async' if sync_commit_off else ''}",
        sync_commit_off=sync_commit_off,
    )


def pgbench_placement_sql(
    ctx: Context, clients: int, *, notify: bool = True, sync_commit_off=False
) -> dict:
    customers = ctx.run.customers
    script = PLACEMENT_SQL
    if not notify:
        script = ctx.run.log_dir / "placement-no-notify.sql"
        script.write_text(
            "".join(
                line
                for line in PLACEMENT_SQL.read_text().splitlines(keepends=True)
                if not line.startswith("NOTIFY")
            )
        )
    seconds = ctx.profile.pgbench_seconds
    ctx.progress.update(
        f"pgbench -f placement.sql c={clients} {seconds}s"
        + ("" if notify else " (no NOTIFY)")
    )
    try:
        return _pgbench(
            ctx,
            [
                "-n",
                "-f",
                str(script),
                "-D",
                f"mincid={min(c.id for c in customers)}",
                "-D",
                f"maxcid={max(c.id for c in customers)}",
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-T",
                str(seconds),
                "-M",
                "prepared",
            ],
            url=ctx.run.db_url,
            log_name=f"placement-sql-c{clients}{'' if notify else '-nonotify'}",
            sync_commit_off=sync_commit_off,
        )
    finally:
        # Its outbox rows go to a topic no relay serves: stamp them so the
        # relays' unpublished-tail index stays as small as in production.
        with ctx.run.connect() as conn:
            conn.execute(
                "UPDATE broker_outboxevent SET published_at = now() "
                "WHERE topic = %s AND published_at IS NULL",
                [PGBENCH_TOPIC],
            )


def _closed(ctx: Context, system, concurrency: int, label: str) -> load.LoadResult:
    seconds = ctx.profile.placement_seconds

    def tick(result: load.LoadResult) -> None:
        elapsed = time.perf_counter() - result.started
        ctx.progress.update(
            f"{label} c={concurrency}: {len(result.samples)} answered, "
            f"{max(0.0, seconds - elapsed):.0f}s left"
        )

    return load.closed_loop(
        system.api_url,
        ctx.run.customers,
        concurrency=concurrency,
        duration=seconds,
        warmup=ctx.profile.placement_warmup,
        tick=tick,
    )


def _sweep_point(result: load.LoadResult) -> dict:
    latencies = [s.latency for s in result.ok()]
    return {
        "concurrency": result.concurrency,
        "tps": rnd(result.throughput(), 1),
        **{k: v for k, v in summary_ms(latencies).items() if k != "count"},
        "requests": len(result.samples),
        "statuses": result.status_counts(),
        "transport_errors": result.errors,
    }


def run(ctx: Context) -> dict:
    # Placement alone: nothing else of the system competes for the CPUs, and its
    # trades go to topics no relay serves (retired at the end).
    ctx.stop_main_system()
    system = ctx.placement_system()
    ctx.progress.update("starting exchange_mock and api")
    system.start_api()
    try:
        return _run(ctx, system)
    finally:
        ctx.retire_placement_system()


def _run(ctx: Context, system) -> dict:
    profile = ctx.profile
    out: dict = {
        "api_workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
        "api_threads": int(os.environ.get("API_THREADS", "8")),
        "customers": len(ctx.run.customers),
        "window_seconds": profile.placement_seconds - profile.placement_warmup,
    }

    # Closed-loop sweep: the concurrency that maximises PlaceTrade/s.
    sweep = []
    for concurrency in profile.placement_concurrency:
        result = _closed(ctx, system, concurrency, "PlaceTrade closed loop")
        point = _sweep_point(result)
        sweep.append(point)
        ctx.progress.log(
            f"placement: c={concurrency} {point['tps']} PlaceTrade/s "
            f"p50 {point['p50_ms']} ms p99 {point['p99_ms']} ms"
        )
    out["sweep"] = sweep
    best = max(sweep, key=lambda p: p["tps"] or 0)
    peak, clients = best["tps"], best["concurrency"]
    out["placetrade_peak_tps"] = peak
    out["placetrade_peak_concurrency"] = clients
    ctx.results["placement"] = out  # the peak is what later sections load against

    # Latency at half the peak, open loop, CPU-accounted. Not profiled: py-spy
    # reading 18 threads 100 times a second takes CPU from the 2 the api shares,
    # and its tail with them.
    rate = max(1.0, peak / 2)

    def half_peak_load(seconds: float, what: str) -> load.LoadResult:
        ctx.progress.update(f"{what} at {rate:.0f}/s")
        return load.open_loop(
            system.api_url,
            ctx.run.customers,
            rate=rate,
            duration=seconds,
            warmup=profile.placement_warmup,
            tick=lambda r: ctx.progress.update(
                f"{what} at {rate:.0f}/s: {len(r.samples)} answered"
            ),
        )

    cpu = CpuAccount({"api": [system.api.pid], "exchange_mock": [system.exchange.pid]})
    cpu.start()
    half = half_peak_load(profile.latency_seconds, "PlaceTrade open loop")
    out["half_peak_cpu"] = cpu.stop(units=len(half.samples))
    # Then a shorter window at the same rate, profiled (py-spy on the gunicorn
    # workers): where a PlaceTrade's time goes.
    with SpyRecorder(
        "api",
        system.api.pid,
        ctx.run.log_dir,
        focus=("handle_request",),
        subprocesses=True,
    ) as spy:
        half_peak_load(profile.profile_seconds, "PlaceTrade open loop, profiled")
    out["profile_api"] = spy.result
    latencies = half.latencies()
    half_summary = summary_ms(latencies)
    out["half_peak"] = {
        "offered_rate": rnd(rate, 1),
        "achieved_tps": rnd(half.throughput(), 1),
        **half_summary,
        "statuses": half.status_counts(),
        "cdf": cdf_ms(latencies),
    }
    out["placetrade_half_peak_p50_ms"] = half_summary["p50_ms"]
    out["placetrade_half_peak_p99_ms"] = half_summary["p99_ms"]
    out["placetrade_half_peak_p99_over_p50_ratio"] = ratio(
        half_summary["p99_ms"], half_summary["p50_ms"]
    )

    # pgbench references at the same number of clients.
    # tpcb-like updates one of `scale` branch rows per transaction: fewer branches
    # than clients would make pgbench wait on row locks and flatter the ratio.
    scale = max(profile.pgbench_scale, clients)
    ctx.progress.update(f"pgbench -i -s {scale}")
    init = subprocess.run(
        [
            pgbench_binary(),
            "-i",
            "-q",
            "-s",
            str(scale),
            "-I",
            "dtGvp",
            ctx.run.pgbench_url,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if init.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {init.stderr[-1000:]}")
    out["pgbench_scale"] = scale
    out["pgbench_clients"] = clients
    tpcb = pgbench_tpcb(ctx, clients)
    out["pgbench_tpcb_tps"] = tpcb["tps"]
    out["pgbench_tpcb_latency_avg_ms"] = tpcb["latency_avg_ms"]
    out["placetrade_vs_pgbench_tpcb_ratio"] = ratio(peak, tpcb["tps"])
    sql = pgbench_placement_sql(ctx, clients)
    out["pgbench_placement_sql_tps"] = sql["tps"]
    out["pgbench_placement_sql_latency_avg_ms"] = sql["latency_avg_ms"]
    out["placetrade_vs_pgbench_placement_sql_ratio"] = ratio(peak, sql["tps"])
    no_notify = pgbench_placement_sql(ctx, clients, notify=False)
    out["pgbench_placement_sql_no_notify_tps"] = no_notify["tps"]
    out["placement_sql_notify_vs_no_notify_ratio"] = ratio(sql["tps"], no_notify["tps"])
    ctx.progress.log(
        f"placement: pgbench tpcb {tpcb['tps']} tps, placement.sql {sql['tps']} tps "
        f"(no NOTIFY {no_notify['tps']}) at c={clients}"
    )

    # Durability tax: synchronous_commit off for the bench database (new
    # connections: restart the api), and for pgbench through PGOPTIONS.
    try:
        ctx.run.set_synchronous_commit("off")
        ctx.progress.update("restarting the api with synchronous_commit=off")
        system.restart_api()
        async_result = _closed(
            ctx, system, clients, "PlaceTrade synchronous_commit=off"
        )
        async_tpcb = pgbench_tpcb(ctx, clients, sync_commit_off=True)
    finally:
        # Back on for every later connection (this api is retired after).
        ctx.run.set_synchronous_commit("on")
    out["placetrade_async_commit_tps"] = rnd(async_result.throughput(), 1)
    out["placetrade_durability_tax_ratio"] = ratio(
        peak, out["placetrade_async_commit_tps"]
    )
    out["pgbench_tpcb_async_commit_tps"] = async_tpcb["tps"]
    out["pgbench_durability_tax_ratio"] = ratio(tpcb["tps"], async_tpcb["tps"])
    ctx.progress.log(
        f"placement: synchronous_commit=off {out['placetrade_async_commit_tps']} "
        f"PlaceTrade/s, pgbench {async_tpcb['tps']} tps"
    )
    return out
