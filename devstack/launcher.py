"""Starting the project's own processes (api, relay, executors, exchange_mock) as real
child processes, for the demo and the integration tests. Each logs to its own file;
readiness is waited for with a deadline, never a fixed sleep.

Each child leads its own session and process group (``new_session``): a Ctrl-C in
the terminal reaches only the launching process, which stops its children in its own
order, and stopping a child ends its whole group — the workers a pre-fork server
(gunicorn, Celery) forked included — so none is left behind holding a port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devstack import procfs
from devstack.wait import NotReady, ProcessExited, WaitTimeout, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


class Stopping(Exception):
    """The launcher's owner is shutting down: a wait for readiness gave up."""


def describe_exit(returncode: int | None) -> str:
    """How a process ended, for people: "status 1", "killed by SIGKILL"."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"status {returncode}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AppProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path
    # The worker's /metrics, /healthz, /readyz port (the api serves its own).
    metrics_port: int = 0
    # What it was started with, so it can be started again the same way.
    argv: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    # True if it leads its own process group (pgid == pid): stopping it then ends
    # the whole group. False: its group is the launcher's, never signalled.
    own_group: bool = False
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM); returns at once."""
        self.signal(signal.SIGCONT)  # a SIGSTOPped process cannot handle TERM
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL it, and its whole group if it leads one; returns at once."""
        if self.own_group and self.group_members():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        elif self.alive():
            self.popen.kill()

    def group_members(self) -> list[int]:
        """Live processes of its group (the process itself, until reaped, and
        whatever it forked); [] if it does not lead a group."""
        if not self.own_group:
            return []
        self.alive()  # reaps it if it exited, so it is not counted as a member
        return procfs.group_members(self.pid)

    def reap_group(self, timeout: float = 10.0) -> list[int]:
        """Once the process has exited: SIGKILL what is left of its group (a worker
        its parent never waited for, an orphan of a SIGKILLed parent) and wait until
        the group is empty. Returns the pids still there after ``timeout``."""
        if self.alive() or not self.group_members():
            return []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        try:
            wait_until(
                lambda: not self.group_members(),
                timeout=timeout,
                interval=0.05,
                what=f"the process group of {self.name} to end",
            )
        except WaitTimeout:
            return self.group_members()
        return []

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait with a deadline, SIGKILL if it did not exit; then end
        whatever is left of its group."""
        if self.alive():
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.popen.wait(5)
        self.reap_group()
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class AppLauncher:
    """Starts processes with a common environment; remembers them so ``stop_all``
    can end every one it started."""

    env: dict[str, str]
    log_dir: Path
    processes: list[AppProcess] = field(default_factory=list)
    # Start each child in its own session and process group (see the module doc).
    new_session: bool = True
    # Polled while waiting for a child to be ready: once it returns True the wait
    # raises ``Stopping`` instead of running to its deadline.
    stopping: Callable[[], bool] | None = None

    def start(
        self, name: str, argv: list[str], extra_env: dict | None = None
    ) -> AppProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = {**os.environ, **self.env, **(extra_env or {})}
        # Several workers on one machine: each gets its own metrics port.
        metrics = int(env.get("METRICS_PORT") or free_port())
        env["METRICS_PORT"] = str(metrics)
        log = log_path.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=self.new_session,
        )
        log.close()
        process = AppProcess(
            name=name,
            popen=popen,
            log_path=log_path,
            metrics_port=metrics,
            argv=list(argv),
            extra_env=dict(extra_env or {}),
            own_group=self.new_session,
        )
        self.processes.append(process)
        return process

    def restart(self, process: AppProcess) -> AppProcess:
        """Start an exited ``process`` again: same name, command, environment and
        metrics port, in its place in ``processes``. Returns at once."""
        assert not process.alive(), f"{process.name} is still running"
        process.reap_group()
        index = self.processes.index(process) if process in self.processes else None
        new = self.start(
            process.name,
            process.argv or list(process.popen.args),
            extra_env={**process.extra_env, "METRICS_PORT": str(process.metrics_port)},
        )
        if index is not None:
            self.processes.remove(new)
            self.processes[index] = new
        return new

    def manage(
        self, name: str, *args: str, extra_env: dict | None = None
    ) -> AppProcess:
        return self.start(
            name, [sys.executable, "manage.py", *args], extra_env=extra_env
        )

    def start_exchange(
        self, url: str, store: Path | None = None, extra_env: dict | None = None
    ) -> AppProcess:
        extra = {"EXCHANGE_URL": url, **(extra_env or {})}
        if store is not None:
            extra["EXCHANGE_STORE"] = str(store)
        process = self.start(
            "exchange_mock", [sys.executable, "-m", "exchange_mock"], extra_env=extra
        )
        self.wait_http(process, url.rstrip("/") + "/healthz")
        return process

    def start_api(self, port: int) -> AppProcess:
        process = self.manage("api", "api", extra_env={"API_PORT": str(port)})
        self.wait_http(process, f"http://127.0.0.1:{port}/api/v1/account")
        return process

    def start_relay(self, name: str = "relay") -> AppProcess:
        return self.manage(name, "relay")

    def start_executor(self, name: str) -> AppProcess:
        return self.manage(name, "executor", extra_env={"EXECUTOR_NAME": name})

    def wait_http(self, process: AppProcess, url: str, timeout: float = 60) -> None:
        def ready() -> bool:
            if self.stopping is not None and self.stopping():
                raise Stopping(f"stopped while waiting for {process.name}")
            if not process.alive():
                raise ProcessExited(
                    f"{process.name} exited with {process.popen.returncode}; "
                    f"log {process.log_path}:\n{process.log_tail()}"
                )
            return http_ok(url)

        try:
            wait_until(ready, timeout=timeout, what=f"{process.name} at {url}")
        except NotReady as exc:
            raise NotReady(f"{exc}\nlog {process.log_path}") from exc

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
