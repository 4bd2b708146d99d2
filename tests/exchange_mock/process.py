"""The exchange as a real process for tests: ``python -m exchange_mock`` on a free
port, with a small HTTP client and problem assertions."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Response:
    def __init__(self, raw: http.client.HTTPResponse) -> None:
        self.status = raw.status
        self.headers = raw.headers
        self.raw_body = raw.read()
        self.content_type = raw.getheader("Content-Type", "")

    def json(self):
        return json.loads(self.raw_body)


class ExchangeProcess:
    """One ``python -m exchange_mock`` on a free port; log kept in a file."""

    def __init__(
        self,
        store: Path,
        log: Path,
        tick_seconds: str = "0.02",
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log = log
        extra = env or {}
        env = {
            **os.environ,
            "EXCHANGE_HOST": "127.0.0.1",
            "EXCHANGE_PORT": str(self.port),
            "EXCHANGE_STORE": str(store),
            "EXCHANGE_TICK_SECONDS": tick_seconds,
            "EXCHANGE_SEED": "42",
            "LOG_LEVEL": "INFO",
            **extra,
        }
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "exchange_mock"],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"exchange exited {self.popen.returncode}:\n{self.logs()}")
            try:
                if self.request("GET", "/healthz", timeout=1).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.popen.kill()
        pytest.fail(f"exchange not healthy in {START_TIMEOUT}s:\n{self.logs()}")

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


def wait_until(
    check: Callable[[], object], timeout: float = 10.0, what: str = "condition"
) -> object:
    """Poll ``check`` until it returns something truthy (returned) or fail at the
    deadline: tests never sleep a fixed time hoping a condition holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
