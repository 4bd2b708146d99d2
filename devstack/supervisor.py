"""Keeping the demo's processes running, and stopping them in order.

A process that exits on its own is restarted with exponential backoff (reset once
it has stayed up a while), after what is left of its process group has been
killed: a gunicorn master killed with SIGKILL leaves workers holding the api's port.
Shutdown goes tier by tier (the api before the executors before the relays before
the exchange): SIGTERM to every process of a tier, a shared deadline, SIGKILL to the
process group of any still running, and a wait until each group is empty.

The supervisor is driven by its owner's loop (``poll``), from one thread: it never
blocks for long and never sleeps.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from devstack.launcher import AppLauncher, AppProcess, describe_exit
from devstack.wait import WaitTimeout, wait_until


@dataclass(frozen=True)
class Backoff:
    """Restart delays: ``initial`` seconds after a first exit, doubling with each
    further exit up to ``maximum``. A process that stayed up ``stable_after``
    seconds starts again from ``initial``."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.maximum, self.initial * 2 ** max(0, failures - 1))


@dataclass
class _Restart:
    exited: AppProcess
    at: float  # monotonic time the restart is due


@dataclass
class Supervisor:
    """Watches ``launcher.processes``; restarts the ones that exit.

    ``stop_order`` lists tiers of name prefixes (a prefix or a tuple of them), first
    stopped first; a process matching none is stopped before all others.
    ``on_exit`` is called with each process noticed to have exited (from ``poll``,
    before it is restarted).
    """

    launcher: AppLauncher
    say: Callable[[str], None]
    stop_order: Sequence[str | tuple[str, ...]]
    backoff: Backoff = field(default_factory=Backoff)
    on_exit: Callable[[AppProcess], None] | None = None
    _failures: dict[str, int] = field(default_factory=dict)
    _pending: dict[str, _Restart] = field(default_factory=dict)

    def poll(self) -> None:
        """Notice exits and schedule their restarts; start the ones that are due."""
        now = time.monotonic()
        for process in list(self.launcher.processes):
            if process.name in self._pending or process.alive():
                continue
            self._exited(process, now)
        for name, restart in list(self._pending.items()):
            if now >= restart.at:
                del self._pending[name]
                try:
                    new = self.launcher.restart(restart.exited)
                except OSError as exc:  # could not even fork/exec: try again later
                    self.say(f"{name} could not be restarted: {exc}")
                    self._exited(restart.exited, now)
                    continue
                self.say(f"{name} restarted (pid {new.pid})")

    def _exited(self, process: AppProcess, now: float) -> None:
        uptime = now - process.started_at
        left = process.reap_group()
        if uptime >= self.backoff.stable_after:
            self._failures[process.name] = 0
        failures = self._failures.get(process.name, 0) + 1
        self._failures[process.name] = failures
        delay = self.backoff.delay(failures)
        self._pending[process.name] = _Restart(process, now + delay)
        self.say(
            f"{process.name} exited ({describe_exit(process.popen.returncode)}, "
            f"pid {process.pid}, up {uptime:.1f} s); restarting it in {delay:.1f} s"
            + (f" (pids {left} of its group would not die)" if left else "")
        )
        if self.on_exit is not None:
            self.on_exit(process)

    def tier(self, name: str) -> int:
        for index, prefix in enumerate(self.stop_order):
            if name.startswith(prefix):
                return index + 1
        return 0

    def shutdown(
        self, *, timeout: float = 20.0, hurry: Callable[[], bool] = lambda: False
    ) -> list[str]:
        """Stop every process, tier by tier; each gets ``timeout`` seconds after
        its SIGTERM (none once ``hurry()`` is true) before its group is SIGKILLed.
        Returns a line per process saying how it ended. Pending restarts are
        dropped."""
        waiting = set(self._pending)
        self._pending.clear()
        outcomes: list[str] = []
        processes = list(self.launcher.processes)
        for tier in sorted({self.tier(p.name) for p in processes}):
            members = [p for p in processes if self.tier(p.name) == tier]
            running = [p for p in members if p.alive()]
            for process in running:
                process.terminate()
            started = time.monotonic()
            with contextlib.suppress(WaitTimeout):
                wait_until(
                    lambda running=running: (
                        hurry() or not any(p.alive() for p in running)
                    ),
                    timeout=timeout,
                    interval=0.05,
                    what="processes to stop",
                )
            waited = time.monotonic() - started
            for process in members:
                killed = process.alive()
                if killed:
                    process.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.popen.wait(10)
                left = process.reap_group()
                notes = []
                if killed:
                    notes.append(f"still running after {waited:.1f} s")
                if process.name in waiting:
                    notes.append("was waiting for its restart")
                if left:
                    notes.append(f"pids {left} of its group would not die")
                outcomes.append(
                    f"{process.name} {describe_exit(process.popen.returncode)}"
                    + (f" ({'; '.join(notes)})" if notes else "")
                )
        self.launcher.processes.clear()
        return outcomes
