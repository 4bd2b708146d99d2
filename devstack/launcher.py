"""Starting the project's own processes (api, relay, executors, exchange_mock) as real
child processes, for the demo and the integration tests. Each logs to its own file;
readiness is waited for with a deadline, never a fixed sleep."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.wait import NotReady, ProcessExited, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return 200 <= response.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


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

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.popen.pid, signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait with a deadline, SIGKILL if it did not exit."""
        if self.alive():
            self.signal(signal.SIGCONT)  # a SIGSTOPped process cannot handle TERM
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
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
        )
        log.close()
        process = AppProcess(
            name=name, popen=popen, log_path=log_path, metrics_port=metrics
        )
        self.processes.append(process)
        return process

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
