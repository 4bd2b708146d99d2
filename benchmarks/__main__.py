"""``python -m benchmarks [--quick] [--only placement,relay,...] [--out DIR]``

Measures placement, relay, end to end, the FIX path, failover and scale on an
isolated copy of the system (see benchmarks/system.py), writes
``<out>/<date>[-quick].json`` and regenerates BENCHMARKS.md with its plots. Exit
status: 0 when every selected section ran (whatever the targets say), 1 when one
failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import config
from benchmarks.context import Context
from benchmarks.system import REPO_ROOT, BenchRun
from benchmarks.util import Progress

SECTIONS = (
    "diagnostics",
    "placement",
    "relay",
    "end_to_end",
    "fix",
    "failover",
    "scale",
)
ALIASES = {"e2e": "end_to_end", "end-to-end": "end_to_end"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run, under 5 minutes"
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated sections among {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument(
        "--out", type=Path, default=REPO_ROOT / "benchmarks" / "results"
    )
    parser.add_argument(
        "--no-page", action="store_true", help="write the JSON, not BENCHMARKS.md"
    )
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="keep bench_<runid> for inspection (topics etc. are still removed)",
    )
    args = parser.parse_args(argv)
    chosen = [
        ALIASES.get(s.strip(), s.strip()) for s in args.only.split(",") if s.strip()
    ]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose among {SECTIONS}")
    args.sections = [s for s in SECTIONS if s in chosen] if chosen else list(SECTIONS)
    return args


def _run_section(ctx: Context, name: str) -> dict:
    from benchmarks import (
        diagnostics,
        end_to_end,
        failover,
        fix,
        placement,
        relay,
        scale,
    )

    module = {
        "diagnostics": diagnostics,
        "placement": placement,
        "relay": relay,
        "end_to_end": end_to_end,
        "fix": fix,
        "failover": failover,
        "scale": scale,
    }[name]
    return module.run(ctx)


def _run_section_resilient(ctx: Context, name: str, progress: Progress) -> dict:
    """Run a section; if a shared service restarted under it (the fault-injection
    suites on this stack do that), wait for the stack to answer again and run
    the section once more from scratch, recording why."""
    before = _services(ctx.run)
    try:
        _fresh_connections()
        return _run_section(ctx, name)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        restarted = [k for k, v in _services(ctx.run).items() if before.get(k) != v]
        if not restarted and not _looks_like_outage(exc):
            raise
        progress.log(
            f"{name}: interrupted by an outage of the shared stack "
            f"({', '.join(restarted) or type(exc).__name__}); retrying once"
        )
        _wait_for_stack(ctx.run, progress)
        ctx.stop_main_system()
        ctx.retire_placement_system()
        _fresh_connections()
        result = _run_section(ctx, name)
        result["retried_after"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return result


def _looks_like_outage(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(
        needle in text
        for needle in (
            "operationalerror",
            "adminshutdown",
            "connection is closed",
            "terminating connection",
            "connection refused",
            "server closed the connection",
        )
    )


def _fresh_connections() -> None:
    from django.db import connections

    for conn in connections.all():
        conn.close_if_unusable_or_obsolete()
        if conn.connection is not None and not conn.is_usable():
            conn.close()


def _wait_for_stack(run: BenchRun, progress: Progress) -> None:
    from devstack.wait import wait_until

    def postgres_up() -> bool:
        try:
            with run.admin_connect() as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    wait_until(
        postgres_up,
        timeout=180,
        interval=1,
        what="PostgreSQL to answer again",
        progress=lambda e: progress.update(f"waiting for the stack ({e:.0f}s)"),
    )


def _services(run: BenchRun) -> dict[str, str]:
    """Identity of each shared service (PostgreSQL's start time, the others'
    pids): the machine is shared with fault-injection suites that restart them,
    and a section during which one restarted has measured the restart too."""
    found: dict[str, str] = {}
    try:
        with run.admin_connect() as conn:
            found["PostgreSQL"] = str(
                conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
            )
    except Exception:
        found["PostgreSQL"] = "unreachable"
    for name, needle in (
        ("Kafka", b"kafka.Kafka"),
        ("ZooKeeper", b"QuorumPeerMain"),
        ("Redis", b"redis-server"),
    ):
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if needle in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        found[name] = ",".join(str(p) for p in sorted(pids)) or "not running"
    return found


def _git_state() -> tuple[str, list[str]]:
    """HEAD of the checkout measured and the tracked files that differ from it
    (other work in progress on a shared checkout), so a results file says which
    code it measured (see benchmarks/results/changes.json)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD") or "?"
        changed = git("diff", "HEAD", "--name-only").splitlines()
    except (OSError, subprocess.SubprocessError):
        return "?", []
    return head, changed


def _postgres_version(run: BenchRun) -> str:
    try:
        with run.admin_connect() as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except Exception:
        return "?"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    profile = config.QUICK if args.quick else config.FULL
    progress = Progress()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    started = datetime.now(UTC)
    t0 = time.monotonic()
    run = BenchRun.create(progress)
    git_commit, git_uncommitted = _git_state()
    name = started.strftime("%Y-%m-%d") + ("-quick" if args.quick else "")
    if args.only:
        name += "-" + "-".join(args.sections)
    results: dict = {
        "schema": 1,
        "run": {
            "run_id": run.run_id,
            "profile": profile.name,
            "quick": args.quick,
            "git_commit": git_commit,
            "git_uncommitted": git_uncommitted,
            "provisional": True,
            "sections": args.sections,
            "started_at": started.isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_start": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "log_dir": str(run.log_dir),
        },
        "errors": {},
    }
    ctx = Context(run=run, profile=profile, progress=progress, results=results)
    status = 0
    try:
        progress.set_section("setup")
        progress.update(f"creating databases {run.db_name}, {run.pgbench_db}")
        run.create_databases()
        run.setup_django()
        progress.update("manage.py migrate")
        run.migrate()
        progress.update(f"creating {profile.customers} customers")
        from decimal import Decimal

        run.create_customers(profile.customers, Decimal("1000000000.00"))
        results["run"]["machine"]["postgres"] = _postgres_version(run)
        progress.log(
            f"run {run.run_id}: profile {profile.name}, sections "
            f"{', '.join(args.sections)}; process logs in {run.log_dir}"
        )
        for section in args.sections:
            progress.set_section(section)
            settled_in = run.settle_postgres()
            section_started = time.monotonic()
            services_before = _services(run)
            # Other engineers' suites share the 2 CPUs: each section says how
            # loaded the machine was around it.
            loadavg_start = [round(x, 2) for x in os.getloadavg()]
            try:
                results[section] = _run_section_resilient(ctx, section, progress)
                results[section]["postgres_settle_s"] = settled_in
                results[section]["loadavg_start"] = loadavg_start
                results[section]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
                results[section]["elapsed_s"] = round(
                    time.monotonic() - section_started, 1
                )
                services_after = _services(run)
                restarted = [
                    name
                    for name, identity in services_before.items()
                    if services_after.get(name) != identity
                ]
                if restarted:
                    results[section]["disturbed_by_restart_of"] = restarted
                    progress.log(
                        f"warning: {', '.join(restarted)} restarted during "
                        f"{section} (another suite on the shared stack): its "
                        "figures include the outage"
                    )
            except KeyboardInterrupt:
                raise
            except Exception:
                status = 1
                results["errors"][section] = traceback.format_exc()
                last = traceback.format_exc().strip().splitlines()[-1]
                progress.log(f"{section} FAILED: {last}")
    except KeyboardInterrupt:
        status = 130
        results["errors"]["interrupted"] = "interrupted (Ctrl-C / SIGTERM)"
        progress.log("interrupted: cleaning up")
    except Exception:
        status = 1
        results["errors"]["setup"] = traceback.format_exc()
        progress.log(f"setup FAILED: {traceback.format_exc().strip().splitlines()[-1]}")
    finally:
        progress.set_section("cleanup")
        progress.update("stopping processes, deleting topics, znodes, databases")
        problems = run.cleanup(keep_database=args.keep_database)
        for problem in problems:
            progress.log(f"cleanup: {problem}")
        if problems:
            results["run"]["cleanup_problems"] = problems

    from benchmarks.report import evaluate_targets, render

    finished = datetime.now(UTC)
    results["run"]["finished_at"] = finished.isoformat(timespec="seconds")
    results["run"]["duration_s"] = round(time.monotonic() - t0, 1)
    results["run"]["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    results["targets"] = evaluate_targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    progress.log(f"results: {path}")
    if not args.no_page:
        page = render(path)
        progress.log(f"page: {page}")
    for target in results["targets"]:
        verdict = {True: "pass", False: "FAIL", None: "not measured"}[target["passed"]]
        progress.log(f"target {target['id']}: {target['value']} -> {verdict}")
    progress.finish()
    return status


if __name__ == "__main__":
    sys.exit(main())
