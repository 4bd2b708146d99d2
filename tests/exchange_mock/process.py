"""The exchange as a real process for tests: ``python -m exchange_mock`` on free
ports, with a small HTTP client, a FIX client factory and problem assertions."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.launcher import AppLauncher, free_port
from devstack.wait import NotReady, wait_until
from exchange_mock.admin import admin_headers
from tests.exchange_mock.fixclient import FixTestClient

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.raw_body = raw.read()
        self.content_type = raw.getheader("Content-Type", "")

    def json(self):
        return json.loads(self.raw_body)


class ExchangeProcess:
    """One ``python -m exchange_mock`` on a free port, started by the devstack
    launcher; its log is kept in a file."""

    def __init__(
        self,
        store: Path,
        log: Path,
        tick_seconds: str = "0.02",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        env = {
            "EXCHANGE_HOST": "127.0.0.1",
            "EXCHANGE_PORT": str(self.port),
            # Its own FIX port too: exchanges of several tests may run at once.
            "EXCHANGE_FIX_PORT": str(free_port()),
            "EXCHANGE_STORE": str(store),
            "EXCHANGE_TICK_SECONDS": tick_seconds,
            "EXCHANGE_SEED": "42",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        self.fix_port = int(env["EXCHANGE_FIX_PORT"])
        # The launcher passes this process's environment on: the exchange's
        # admin token (if any) is the one of both together.
        self.admin_headers = admin_headers({**os.environ, **env})
        launcher = AppLauncher(env=env, log_dir=log.parent)
        self.process = launcher.start(log.stem, [sys.executable, "-m", "exchange_mock"])
        self.popen = self.process.popen
        self.log = self.process.log_path
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        def healthy() -> bool:
            return self.request("GET", "/healthz", timeout=1).status == 200

        try:
            wait_until(
                healthy,
                timeout=START_TIMEOUT,
                what="the exchange's /healthz",
                alive=self.process.alive,
                retry_on=(OSError,),
            )
        except NotReady as exc:
            self.popen.kill()
            pytest.fail(f"{exc} (exit {self.popen.poll()}):\n{self.logs()}")

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def fix_client(self, sender: str = "BROKER-0") -> FixTestClient:
        """A raw FIX client connected to this exchange's acceptor (not logged
        on yet)."""
        return FixTestClient(self.fix_port, sender=sender)

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        raw: bytes | None = None,
        conn: http.client.HTTPConnection | None = None,
        timeout: float = 10,
        headers: dict[str, str] | None = None,
        admin_auth: bool = True,
    ) -> Response:
        """``admin_auth``: send the admin token on ``/admin`` paths."""
        own = conn is None
        conn = conn or self.connect(timeout)
        try:
            payload = (
                raw
                if raw is not None
                else (None if body is None else json.dumps(body).encode())
            )
            sent = {"Content-Type": "application/json"} if payload is not None else {}
            if admin_auth and path.startswith("/admin"):
                sent.update(self.admin_headers)
            conn.request(
                method, path, body=payload, headers={**sent, **(headers or {})}
            )
            return Response(conn.getresponse())
        finally:
            if own:
                conn.close()

    def terminate(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            pytest.fail(f"exchange ignored SIGTERM:\n{self.logs()}")


def assert_problem(response: Response, status: int, code: str) -> dict:
    assert response.status == status, response.raw_body
    assert response.content_type == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] and problem["title"] and problem["detail"]
    return problem
