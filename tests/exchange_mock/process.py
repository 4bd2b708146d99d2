"""The exchange as a real process for tests: ``python -m exchange_mock`` on a free
port, with a small HTTP client and problem assertions."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devstack.launcher import AppLauncher, free_port
from devstack.wait import NotReady, wait_until

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
        launcher = AppLauncher(
            env={
                "EXCHANGE_HOST": "127.0.0.1",
                "EXCHANGE_PORT": str(self.port),
                "EXCHANGE_STORE": str(store),
                "EXCHANGE_TICK_SECONDS": tick_seconds,
                "EXCHANGE_SEED": "42",
                "LOG_LEVEL": "INFO",
                **(env or {}),
            },
            log_dir=log.parent,
        )
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
    ) -> Response:
        own = conn is None
        conn = conn or self.connect(timeout)
        try:
            payload = (
                raw
                if raw is not None
                else (None if body is None else json.dumps(body).encode())
            )
            sent = {"Content-Type": "application/json"} if payload is not None else {}
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


def new_id() -> str:
    return f"t-{uuid.uuid4()}"


def order_body(client_order_id: str, **overrides) -> dict:
    return {
        "client_order_id": client_order_id,
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "10",
        "type": "market",
        **overrides,
    }


def assert_problem(response: Response, status: int, code: str) -> dict:
    assert response.status == status, response.raw_body
    assert response.content_type == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] and problem["title"] and problem["detail"]
    return problem


def fence(session: str, epoch: int) -> dict[str, str]:
    """The headers of a fenced request."""
    return {"X-Session": session, "X-Epoch": str(epoch)}
