"""Where the time goes: py-spy sampling profiles of the system's processes, and CPU
accounting per role over a measurement window.

- ``SpyRecorder``: ``py-spy record --format raw --idle --nonblocking`` attached to a
  running process for the duration of a ``with`` block (SIGINT ends it, py-spy
  then writes its samples). Idle samples are kept on purpose: a thread waiting on
  a socket is where a request's *latency* goes even when it costs no CPU. The
  samples of the threads that do the work (``focus``: a function on their stack)
  are summarised into categories (PostgreSQL, exchange HTTP, Kafka, Django ORM,
  ...) by the innermost library frame, plus the top frames. ``--nonblocking``
  does not pause the target, so the profile barely perturbs what it measures.
- ``CpuAccount``: CPU seconds (user + system, from /proc) consumed by each role
  (api, relay, executors, exchange_mock, PostgreSQL, Kafka, ZooKeeper, this
  driver) between two snapshots, next to what the whole machine did, so a
  throughput bound on the shared 2 cores can be attributed.

Profiles are best effort: without py-spy (or ptrace rights) the section records
why and carries on.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.launcher import REPO_ROOT

# Innermost matching frame decides the category: (substring of the frame, name).
CATEGORIES = (
    ("psycopg", "PostgreSQL (psycopg: round trips, protocol)"),
    ("urllib3", "exchange HTTP (requests/urllib3)"),
    ("requests/", "exchange HTTP (requests/urllib3)"),
    ("http/client.py", "exchange HTTP (requests/urllib3)"),
    ("redis/", "Redis (throttle, cache)"),
    ("confluent_kafka", "Kafka client"),
    ("consumer.py", "Kafka client (poll: waiting for messages)"),
    ("django/db/", "Django ORM (queries built, rows to models)"),
    ("rest_framework/", "DRF (views, serializers, auth)"),
    ("django/", "Django (request, middleware)"),
    ("json/", "JSON"),
    ("logging/", "logging"),
    ("prometheus_client", "metrics"),
    ("gunicorn/", "gunicorn"),
    ("kazoo/", "ZooKeeper client"),
    ("broker/", "project code"),
    ("executor/", "project code"),
)
TOP = 12

# An executor's working threads: per led topic a leader thread (consume,
# journal, send) and a FIX session thread (read, book the reports). py-spy names
# a frame "Class.function (path relative to the cwd:line)".
EXECUTOR_THREADS = {
    "leader thread": ("_lead_taken",),
    "FIX session thread": ("FixSession.run (executor/fix/session.py",),
}
# Where those threads wait for work: blocked in C right under these frames
# (the consumer's poll, the session's select and recv) ...
EXECUTOR_IDLE_LEAVES = ("TopicConsumer.poll", "FixSession._read")
# ... or anywhere under this one (the leader waiting for the window to open).
EXECUTOR_IDLE_MARKERS = ("Window.wait_for_room",)


def py_spy_binary() -> str | None:
    venv = Path(sys.executable).with_name("py-spy")
    if venv.exists():
        return str(venv)
    return shutil.which("py-spy")


def _frame_file(frame: str) -> str:
    # "function (path/to/file.py:123)" → "path/to/file.py"
    if frame.endswith(")") and " (" in frame:
        return frame.rsplit(" (", 1)[1].rsplit(":", 1)[0]
    return ""


def _short(frame: str) -> str:
    """ "func (/long/path/pkg/mod.py:12)" → "func (pkg/mod.py)"."""
    if " (" not in frame:
        return frame
    name, location = frame.rsplit(" (", 1)
    path = location.rsplit(":", 1)[0]
    root = str(REPO_ROOT) + "/"
    if path.startswith(root) and "/site-packages/" not in path:
        return f"{name} ({path[len(root) :]})"
    parts = path.split("/")
    for marker in ("site-packages", "python3.11"):
        if marker in parts:
            parts = parts[parts.index(marker) + 1 :]
            break
    return f"{name} ({'/'.join(parts[-3:])})"


def categorise(
    stack: list[str],
    idle_markers: Iterable[str] = (),
    idle_leaves: Iterable[str] = (),
) -> str:
    """``idle_markers``: a frame anywhere on the stack makes it idle;
    ``idle_leaves``: only as the innermost Python frame (a thread blocked in C
    under it: a select, a socket read, librdkafka's consume)."""
    for marker in idle_leaves:
        if marker in stack[-1]:
            return f"idle ({marker})"
    for marker in idle_markers:
        if any(marker in frame for frame in stack):
            return f"idle ({marker})"
    for frame in reversed(stack):
        path = _frame_file(frame)
        for needle, name in CATEGORIES:
            if needle in path:
                return name
    return "other (stdlib, C extensions)"


def summarise_raw(
    text: str,
    *,
    focus: Iterable[str],
    idle_markers: Iterable[str] = (),
    idle_leaves: Iterable[str] = (),
) -> dict:
    """Summary of py-spy's raw (collapsed stack) output, keeping only stacks with
    a frame containing one of ``focus`` (the working threads). With idle leaves
    or markers, the samples that are not idle are also summarised apart
    (``busy_*``: where a thread's work goes, whatever it waited in between)."""
    focus = tuple(focus)
    categories: Counter = Counter()
    leaves: Counter = Counter()
    inclusive: Counter = Counter()
    busy_categories: Counter = Counter()
    busy_inclusive: Counter = Counter()
    total = kept = busy = 0
    for line in text.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        stack = stack_text.split(";")
        if focus and not any(f in frame for frame in stack for f in focus):
            continue
        kept += count
        category = categorise(stack, idle_markers, idle_leaves)
        categories[category] += count
        leaves[_short(stack[-1])] += count
        working = not category.startswith("idle (")
        if working:
            busy += count
            busy_categories[category] += count
        seen = set()
        for frame in stack:
            path = _frame_file(frame)
            in_project = path.endswith(".py") and (
                path.startswith(("broker/", "executor/", "exchange_mock/"))
                or (
                    path.startswith(str(REPO_ROOT) + "/")
                    and "/site-packages/" not in path
                )
            )
            if in_project and frame not in seen:
                seen.add(frame)
                inclusive[_short(frame)] += count
                if working:
                    busy_inclusive[_short(frame)] += count

    def shares(counter: Counter, of: int) -> list[dict]:
        return [
            {"name": name, "samples": n, "share": round(n / max(1, of), 4)}
            for name, n in counter.most_common(TOP)
        ]

    out = {
        "samples_total": total,
        "samples_focus": kept,
        "categories": shares(categories, kept),
        "top_frames": shares(leaves, kept),
        "top_project_frames_inclusive": shares(inclusive, kept),
    }
    if tuple(idle_markers) or tuple(idle_leaves):
        out["samples_busy"] = busy
        out["busy_categories"] = shares(busy_categories, busy)
        out["busy_top_project_frames_inclusive"] = shares(busy_inclusive, busy)
    return out


@dataclass
class SpyRecorder:
    """``with SpyRecorder(...) as spy: ...``; ``spy.result`` afterwards."""

    label: str
    pid: int
    out_dir: Path
    focus: tuple[str, ...]
    idle_markers: tuple[str, ...] = ()
    idle_leaves: tuple[str, ...] = ()
    subprocesses: bool = False
    rate: int = 100
    # Threads summarised apart as well: name → focus (e.g. a leader thread and
    # the FIX session thread it started).
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    _proc: subprocess.Popen | None = None
    _started: float = 0.0

    @property
    def raw_path(self) -> Path:
        return self.out_dir / f"pyspy-{self.label}.txt"

    def __enter__(self) -> SpyRecorder:
        binary = py_spy_binary()
        if binary is None:
            self.result = {"error": "py-spy not installed"}
            return self
        argv = [
            binary,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--idle",
            "--nonblocking",
            "--output",
            str(self.raw_path),
        ]
        if self.subprocesses:
            argv.append("--subprocesses")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = (self.out_dir / f"pyspy-{self.label}.log").open("wb")
        self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        if self._proc is None:
            return
        seconds = time.monotonic() - self._started
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        if not self.raw_path.exists():
            log = self.out_dir / f"pyspy-{self.label}.log"
            tail = log.read_text(errors="replace")[-300:] if log.exists() else ""
            self.result = {"error": f"py-spy wrote nothing: {tail.strip()}"}
            return
        raw = self.raw_path.read_text(errors="replace")
        self.result = {
            "process": self.label,
            "pid": self.pid,
            "seconds": round(seconds, 1),
            "rate_hz": self.rate,
            "focus": list(self.focus),
            "idle_included": True,
            **summarise_raw(
                raw,
                focus=self.focus,
                idle_markers=self.idle_markers,
                idle_leaves=self.idle_leaves,
            ),
        }
        if self.groups:
            self.result["groups"] = {
                name: summarise_raw(
                    raw,
                    focus=focus,
                    idle_markers=self.idle_markers,
                    idle_leaves=self.idle_leaves,
                )
                for name, focus in self.groups.items()
            }


# -- CPU accounting -----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds user+system) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15.
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _machine_busy() -> float:
    """CPU seconds the whole machine spent not idle (all CPUs)."""
    parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in parts]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICKS


class CpuAccount:
    """CPU seconds per role between ``start()`` and ``stop()``. Roles are given as
    name → root pids (children included: gunicorn workers); PostgreSQL, Kafka
    and ZooKeeper are found by their command lines (they serve every user of
    the shared stack, so their share is an upper bound for this run)."""

    def __init__(self, roles: dict[str, list[int]]) -> None:
        self.roles = roles
        self._before: dict[str, float] = {}
        self._machine = 0.0
        self._wall = 0.0

    def _role_pids(self) -> dict[str, set[int]]:
        pids = _all_pids()
        parents = {}
        for pid in pids:
            stat = _proc_stat(pid)
            if stat is not None:
                parents[pid] = stat[0]
        out: dict[str, set[int]] = {}
        for role, roots in self.roles.items():
            members = set(roots)
            grew = True
            while grew:
                grew = False
                for pid, ppid in parents.items():
                    if ppid in members and pid not in members:
                        members.add(pid)
                        grew = True
            out[role] = members
        shared = {"PostgreSQL": set(), "Kafka": set(), "ZooKeeper": set()}
        for pid in parents:
            cmd = _cmdline(pid)
            if cmd.startswith("postgres:") or "/bin/postgres" in cmd:
                shared["PostgreSQL"].add(pid)
            elif "kafka.Kafka" in cmd:
                shared["Kafka"].add(pid)
            elif "QuorumPeerMain" in cmd:
                shared["ZooKeeper"].add(pid)
        out.update(shared)
        return out

    def _snapshot(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, pids in self._role_pids().items():
            seconds = 0.0
            for pid in pids:
                stat = _proc_stat(pid)
                if stat is not None:
                    seconds += stat[1]
            totals[role] = seconds
        own = os.times()
        totals["load generator (this driver)"] = own.user + own.system
        return totals

    def start(self) -> None:
        self._before = self._snapshot()
        self._machine = _machine_busy()
        self._wall = time.monotonic()

    def stop(self, *, units: int = 0) -> dict:
        """CPU per role over the window (processes that exited in between are
        not counted: keep the window to a steady state)."""
        after = self._snapshot()
        wall = time.monotonic() - self._wall
        machine = _machine_busy() - self._machine
        roles = {
            role: round(max(0.0, after[role] - self._before.get(role, 0.0)), 3)
            for role in after
        }
        known = sum(roles.values())
        cpus = os.cpu_count() or 1
        out = {
            "wall_s": round(wall, 2),
            "cpus": cpus,
            "machine_busy_cpu_s": round(machine, 2),
            "machine_capacity_cpu_s": round(wall * cpus, 2),
            "machine_busy_share": round(machine / max(1e-6, wall * cpus), 4),
            "roles_cpu_s": roles,
            "other_processes_cpu_s": round(max(0.0, machine - known), 2),
        }
        if units:
            out["units"] = units
            out["cpu_ms_per_unit"] = {
                role: round(cpu / units * 1000, 2) for role, cpu in roles.items()
            }
        return out
