"""HTTP transport of the exchange: keep-alive connections, routing, problems,
fault injection and a graceful stop. The routes live in :mod:`exchange_mock.routes`
(public) and :mod:`exchange_mock.admin` (operator); README.md documents them. This
module is the top of the transport: it imports the routes, which know a request
only through the protocol :class:`exchange_mock.request.Request` (satisfied by
:class:`ExchangeRequestHandler`) and import nothing from here.

Orders do not come this way: they enter through the FIX acceptor
(:mod:`exchange_mock.fixserver`); HTTP serves the market data, read-only
introspection (orders, FIX sessions, ``/metrics``) and the admin controls.

Status policy: 400 = the request is malformed (fix it, do not resend as is);
401 = an admin route without the token; 404 = no such resource; 405 = a known
path, another method; 503 ``injected_error`` = a fault injected on purpose,
nothing processed. Every error is an RFC 9457 problem
(``application/problem+json``) with a stable ``code``; bad input never yields a
500.

Connections are HTTP/1.1 keep-alive: every response carries Content-Length, and
a request body is always read in full so the next request on the connection
starts where it should.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import socketserver
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from exchange_mock import admin, metrics, routes
from exchange_mock.engine import Exchange
from exchange_mock.faults import Faults
from exchange_mock.logfmt import kv, log_event
from exchange_mock.problems import Problem
from exchange_mock.request import Response, Routes

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
ROUTES = routes.ROUTES + admin.ROUTES
# The quotes port: prices for clients that must not reach orders or the admin.
MARKET_DATA_ROUTES = routes.MARKET_DATA_ROUTES


class ExchangeRequestHandler(BaseHTTPRequestHandler):
    """One connection; serves keep-alive requests until the client or the
    server's shutdown closes it."""

    protocol_version = "HTTP/1.1"
    server_version = "exchange_mock/1"
    # TCP_NODELAY: the status line/headers and the body go out in separate writes;
    # with Nagle's algorithm the body waited for the client's delayed ACK, ~40 ms
    # on every request (measured by make bench: 44 ms -> 1 ms per exchange call).
    disable_nagle_algorithm = True
    # Socket timeout: an idle keep-alive connection (or a client stalling
    # mid-request) releases its thread after this long.
    timeout = 30
    server: ExchangeHTTPServer
    query = ""
    body = b""

    # The request protocol (exchange_mock.request.Request) the route handlers use.
    @property
    def exchange(self) -> Exchange:
        return self.server.exchange

    @property
    def faults(self) -> Faults:
        return self.server.faults

    @property
    def connection_count(self) -> int:
        return self.server.connection_count

    def setup(self) -> None:
        super().setup()
        self.server.track(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self)

    # Every method goes through one dispatcher, so a wrong method on a known path
    # is a 405 problem rather than BaseHTTPRequestHandler's HTML 501.
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def handle_one_request(self) -> None:
        """As BaseHTTPRequestHandler's, with two changes: the connection counts
        as busy from the moment a request line arrives, so a graceful stop lets
        that request finish instead of cutting it; and a peer that went away
        ends the connection quietly instead of printing a traceback."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.server.begin_request(self):
            self.close_connection = True
            return
        try:
            if len(self.raw_requestline) > 65536:
                self.requestline = self.request_version = self.command = ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.parse_request():
                return  # parse_request has sent the error
            method = getattr(self, "do_" + self.command, None)
            if method is None:
                self.send_error(
                    HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})"
                )
                return
            method()
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        finally:
            self.server.end_request(self)

    def _dispatch(self) -> None:
        self.body = b""
        if (
            self.server.serves_metrics
            and self.command == "GET"
            and urlsplit(self.path).path == "/metrics"
        ):
            # Scrapes are never subject to injected faults.
            self._send_bytes(
                200,
                metrics.render(
                    self.exchange, self.server.faults, self.server.fix_acceptor
                ),
                metrics.CONTENT_TYPE,
            )
            return
        plan = self.server.faults.plan(urlsplit(self.path).path)
        if plan.refuse:
            # Before the body is read and anything is done: to the client this
            # is a connection closed with no answer.
            self._hang_up("refused")
            return
        if plan.delay_s:
            self.server.halt.wait(plan.delay_s)
        try:
            self.body = self._read_body()
            if plan.error:
                raise Problem(
                    503,
                    "injected_error",
                    "Service unavailable",
                    "fault injection: the request was not processed; retry",
                )
            status, payload, headers = self._route()
            response = (status, payload, JSON, headers)
        except Problem as problem:
            if problem.close:
                self.close_connection = True
            response = (
                problem.status,
                problem.to_json(),
                PROBLEM_JSON,
                problem.headers,
            )
        except (ConnectionError, TimeoutError):
            raise  # the peer is gone: nobody to answer
        except Exception:
            logger.exception(
                "%s", kv("internal_error", method=self.command, path=self.path)
            )
            self.close_connection = True
            problem = Problem(
                500, "internal_error", "Internal error", "see the exchange's log"
            )
            response = (500, problem.to_json(), PROBLEM_JSON, {})
        self._send(*response)

    def _hang_up(self, fault: str) -> None:
        log_event(
            logger, "fault_injected", fault=fault, method=self.command, path=self.path
        )
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _route(self) -> Response:
        parts = urlsplit(self.path)
        self.query = parts.query
        if admin.is_admin_path(parts.path):
            # Before routing: without the token, no answer tells which exist.
            admin.authorize(self, self.server.admin_token)
        for pattern, methods in self.server.routes:
            match = pattern.fullmatch(parts.path)
            if match is None:
                continue
            handler = methods.get(self.command)
            if handler is None:
                allowed = ", ".join(methods)
                raise Problem(
                    405,
                    "method_not_allowed",
                    "Method not allowed",
                    f"{self.command} is not allowed on {parts.path}; use {allowed}",
                    headers={"Allow": allowed},
                )
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            return handler(self, params)
        raise Problem(404, "not_found", "Not found", f"no resource at {parts.path!r}")

    def _read_body(self) -> bytes:
        """Read the whole body (keep-alive needs the stream positioned right)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Problem(
                411,
                "length_required",
                "Length required",
                "chunked bodies are not supported; send Content-Length",
                close=True,
            )
        raw = self.headers.get("Content-Length")
        if raw is None:
            return b""
        try:
            length = int(raw)
            if length < 0:
                raise ValueError(raw)
        except ValueError as exc:
            raise Problem(
                400,
                "invalid_content_length",
                "Invalid Content-Length",
                f"Content-Length {raw!r} is not a non-negative integer",
                close=True,
            ) from exc
        if length > MAX_BODY_BYTES:
            raise Problem(
                413,
                "payload_too_large",
                "Payload too large",
                f"the body may be at most {MAX_BODY_BYTES} bytes",
                close=True,
            )
        return self.rfile.read(length)

    def _send(
        self,
        status: int,
        payload: dict[str, Any],
        content_type: str,
        headers: dict[str, str],
    ) -> None:
        self._send_bytes(
            status, json.dumps(payload).encode("utf-8"), content_type, headers
        )

    def _send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        headers = headers or {}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection or self.server.stopping:
            # Also sets close_connection: the handler loop ends after this reply.
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """Protocol-level errors raised by BaseHTTPRequestHandler itself (bad
        request line, headers too large, unknown method) as problems too."""
        title = self.responses.get(code, ("Error", ""))[0]
        codes = {
            400: "bad_request",
            414: "uri_too_long",
            431: "headers_too_large",
            501: "method_not_implemented",
            505: "http_version_not_supported",
        }
        problem = Problem(
            code, codes.get(code, "http_error"), title, message or title, close=True
        )
        # The request may be unparsed: the stream cannot be trusted after this.
        self.close_connection = True
        with contextlib.suppress(ConnectionError, TimeoutError):
            self._send(code, problem.to_json(), PROBLEM_JSON, {})

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log_event(
            logger,
            "http_request",
            logging.DEBUG,
            method=self.command,
            path=self.path,
            status=code,
        )

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes an access log line to stderr for every request.
        logger.debug("%s", kv("http", message=format % args))


# Connection states, for the graceful stop.
_IDLE = "idle"  # between requests: safe to cut
_BUSY = "busy"  # a request is being read, processed or answered
_CUT = "cut"  # cut by stop(); a request read now is dropped unprocessed


class ExchangeHTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server with a graceful stop.

    :meth:`stop`: no new connections, requests in flight are answered (with
    ``Connection: close``), idle keep-alive connections are closed, and the
    handler threads are joined.
    """

    # Joinable handler threads: server_close() waits for in-flight requests.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # bursts of concurrent clients (the default is 5)

    def __init__(
        self,
        address: tuple[str, int],
        exchange: Exchange,
        faults: Faults | None = None,
        *,
        admin_token: str | None = None,
        route_table: Routes = ROUTES,
        serves_metrics: bool = True,
    ) -> None:
        """``admin_token``: required by ``/admin/*`` (None: open).
        ``route_table``: what this listener serves (``MARKET_DATA_ROUTES`` for
        the quotes port, which also leaves out ``/metrics``)."""
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.exchange = exchange
        self.faults = faults or Faults()
        self.admin_token = admin_token
        self.routes = route_table
        self.serves_metrics = serves_metrics
        # The FIX acceptor next to this server (set by the app): its counters
        # are in /metrics.
        self.fix_acceptor: Any = None
        self.stopping = False
        # Set by stop(): cuts short injected delays.
        self.halt = threading.Event()
        self._connections_lock = threading.Lock()
        self._connections: dict[ExchangeRequestHandler, str] = {}
        super().__init__(address, ExchangeRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves socket.getfqdn(host), which can stall on
        # a machine without reverse DNS; the name is unused here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def url(self) -> str:
        host = self.server_name
        return (
            f"http://[{host}]:{self.server_port}"
            if ":" in host
            else (f"http://{host}:{self.server_port}")
        )

    @property
    def connection_count(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def track(self, handler: ExchangeRequestHandler) -> None:
        with self._connections_lock:
            self._connections[handler] = _IDLE
            if self.stopping:
                # Accepted just before the stop: serve what it sends at once,
                # but do not hold the stop up for the full idle timeout.
                handler.connection.settimeout(1.0)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr for any handler exception.
        logger.warning(
            "%s", kv("connection_error", client=client_address[0]), exc_info=True
        )

    def untrack(self, handler: ExchangeRequestHandler) -> None:
        with self._connections_lock:
            self._connections.pop(handler, None)

    def begin_request(self, handler: ExchangeRequestHandler) -> bool:
        """Mark the connection busy; False if a stop already cut it (the request
        must then be dropped unprocessed: its answer could not be sent)."""
        with self._connections_lock:
            if self._connections.get(handler) == _CUT:
                return False
            self._connections[handler] = _BUSY
            return True

    def end_request(self, handler: ExchangeRequestHandler) -> None:
        with self._connections_lock:
            if self._connections.get(handler) == _BUSY:
                self._connections[handler] = _IDLE

    def stop(self) -> None:
        """Stop serving gracefully; call from a thread other than serve_forever's.

        Guarantee: every request the exchange processes is answered; a request
        racing the stop on an idle connection is dropped unprocessed (the client
        sees a reset and may resend).
        """
        self.halt.set()
        self.shutdown()  # the accept loop ends; nothing new is accepted
        with self._connections_lock:
            self.stopping = True
            idle = [h for h, state in self._connections.items() if state == _IDLE]
            for handler in idle:
                self._connections[handler] = _CUT
        for handler in idle:
            # Wakes the thread blocked reading the next request line: it sees
            # EOF (or finds itself cut in begin_request) and ends.
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        self.server_close()  # joins the handler threads
