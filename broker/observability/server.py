"""The workers' (relay, executor, celery) own small HTTP endpoint: ``/metrics``,
``/healthz`` (the process is alive) and ``/readyz`` (its dependencies answer)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

logger = logging.getLogger(__name__)


def metrics_port() -> int:
    """``METRICS_PORT`` (default 9100); 0 turns the endpoint off."""
    return int(os.environ.get("METRICS_PORT", "9100"))


def serve_worker_endpoints(
    ready: Callable[[], bool], *, port: int | None = None
) -> ThreadingHTTPServer | None:
    """Serve in a daemon thread. A port already taken (several workers on one
    laptop) is logged, not fatal: the worker's job matters more than its metrics."""
    port = metrics_port() if port is None else port
    if port == 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                try:
                    ok = ready()
                except Exception:
                    logger.warning("readiness check failed", exc_info=True)
                    ok = False
                self._send(
                    200 if ok else 503,
                    b"ready\n" if ok else b"not ready\n",
                    "text/plain",
                )
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # probes every few seconds: quiet
            pass

    try:
        server = ThreadingHTTPServer(
            (os.environ.get("METRICS_HOST", "0.0.0.0"), port), Handler
        )
    except OSError as exc:
        logger.warning("metrics endpoint not started port=%s error=%s", port, exc)
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("metrics endpoint listening port=%s", server.server_address[1])
    return server


def celery_broker_ready() -> bool:
    """Readiness of celery beat: its broker (Redis) answers. Beat only sends jobs;
    it never touches PostgreSQL (and its NetworkPolicy keeps it away from it)."""
    from broker.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return True


def celery_ready() -> bool:
    """Readiness of a celery worker: its broker (Redis) and PostgreSQL answer."""
    from django.db import connection

    celery_broker_ready()
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        connection.close()
    return True
