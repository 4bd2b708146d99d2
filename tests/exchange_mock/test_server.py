"""The real process over HTTP (``python -m exchange_mock`` as a subprocess): the
market data, read-only introspection of what the FIX sessions did (``/orders``,
``/fix/sessions``), the admin controls and the HTTP faults, problems for bad
requests, market hours, and a graceful stop. Orders are placed over FIX (the
only way in: the HTTP order entry and report feed are gone)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from devstack.wait import WaitTimeout, wait_until
from exchange_mock.faults import FaultConfig
from tests.exchange_mock.fixclient import FixTestClient
from tests.exchange_mock.process import ExchangeProcess, assert_problem

CONNECTION_LOST = (OSError, http.client.HTTPException)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    """One exchange with frozen quotes, shared: every test uses its own FIX
    session and order ids, and sets the AAPL quote it needs."""
    tmp = tmp_path_factory.mktemp("exchange")
    process = ExchangeProcess(tmp / "exchange.db", tmp / "exchange.log", "0")
    yield process
    assert process.terminate() == 0, process.logs()


@pytest.fixture(autouse=True)
def clear_faults(request):
    yield
    if "exchange" in request.fixturenames:
        exchange = request.getfixturevalue("exchange")
        assert exchange.request("POST", "/admin/faults", {}).status == 200


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def new_sender() -> str:
    return f"BROKER-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def fix_session(
    process: ExchangeProcess, sender: str = "BROKER-0"
) -> Iterator[FixTestClient]:
    """A FIX client logged on to ``process``, disconnected afterwards (a stop
    would otherwise wait for its answer to the Logout)."""
    client = process.fix_client(sender)
    try:
        client.logon()
        yield client
    finally:
        client.close()


def set_quote(process: ExchangeProcess, last: str = "190.00", size: str = "1000"):
    """AAPL at ``last`` (bid last-0.02, ask last+0.02 around 190)."""
    response = process.request(
        "POST", "/admin/quotes/AAPL", {"last": last, "size": size}
    )
    assert response.status == 200, response.raw_body
    return response.json()


def fix_session_state(process: ExchangeProcess, sender: str) -> dict | None:
    sessions = process.request("GET", "/fix/sessions").json()["sessions"]
    return next((s for s in sessions if s["session_id"] == sender), None)


def wait_for_session_state(process: ExchangeProcess, sender: str, **expected):
    """Wait until ``GET /fix/sessions`` shows ``expected`` for ``sender`` (a
    message's number is stored once its effect is: it may trail the answer)."""
    want = {"session_id": sender, **expected}
    try:
        wait_until(
            lambda: fix_session_state(process, sender) == want,
            timeout=5,
            what=f"{sender} at {expected}",
        )
    except WaitTimeout:
        assert fix_session_state(process, sender) == want


# --- market data ---


def test_health_symbols_and_quotes(exchange):
    assert exchange.request("GET", "/healthz").json() == {"status": "ok"}
    symbols = exchange.request("GET", "/symbols").json()["symbols"]
    assert {"AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX"} <= set(
        symbols
    )
    quote = exchange.request("GET", "/quotes/MSFT").json()
    assert quote["symbol"] == "MSFT"
    assert Decimal(quote["bid"]) < Decimal(quote["last"]) < Decimal(quote["ask"])
    assert quote["timestamp"].endswith("Z")
    quotes = exchange.request("GET", "/quotes").json()["quotes"]
    assert {q["symbol"] for q in quotes} == set(symbols)
    assert_problem(exchange.request("GET", "/quotes/NOPE"), 404, "unknown_symbol")


# --- the HTTP order entry is gone ---


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/orders/t-1/cancel"),
        ("POST", "/sessions/trades.0/logon"),
        ("GET", "/sessions/trades.0/reports"),
        ("GET", "/sessions/trades.0/reports?after=0&wait=1"),
    ],
)
def test_http_cancel_logon_and_report_feed_are_gone(exchange, method, path):
    body = {"epoch": 1} if path.endswith("/logon") else None
    headers = {"X-Session": "trades.0", "X-Epoch": "1"}
    assert_problem(
        exchange.request(method, path, body, headers=headers), 404, "not_found"
    )


def test_http_order_entry_is_gone(exchange):
    cid = new_id()
    order = {
        "client_order_id": cid,
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "10",
        "type": "market",
    }
    headers = {"X-Session": "trades.0", "X-Epoch": "1"}
    response = exchange.request("POST", "/orders", order, headers=headers)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"
    assert exchange.request("GET", f"/orders?client_order_id={cid}").json() == {
        "orders": []
    }


# --- introspection of the FIX sessions' orders ---


def test_orders_placed_over_fix_are_shown_over_http(exchange):
    set_quote(exchange)  # ask 190.02
    sender = new_sender()
    filled, resting = new_id(), new_id()
    with fix_session(exchange, sender) as client:
        client.order(filled)  # a market buy: filled at once
        assert client.expect("8").get(150) == "F"
        client.order(resting, price="189.00")
        assert client.expect("8").get(150) == "0"

    order = exchange.request("GET", f"/orders/{filled}").json()
    assert (order["session_id"], order["status"]) == (sender, "filled")
    assert (order["filled_quantity"], order["leaves_quantity"]) == ("10", "0")
    [execution] = order["executions"]
    assert execution["exec_id"] == order["order_id"] + "-1"
    assert execution["price"] == order["average_price"] == "190.02"
    query = f"client_order_id={resting}&client_order_id={filled}"
    listed = exchange.request("GET", f"/orders?{query}").json()["orders"]
    # In acceptance order, whatever the order of the query.
    assert [o["client_order_id"] for o in listed] == [filled, resting]
    assert listed[0] == order
    assert (listed[1]["status"], listed[1]["limit_price"]) == ("new", "189.00")
    everything = exchange.request("GET", "/orders").json()["orders"]
    assert [o for o in everything if o["session_id"] == sender] == listed
    assert_problem(exchange.request("GET", f"/orders/{new_id()}"), 404, "unknown_order")


def test_fix_sessions_show_their_numbers_and_feed_progress(exchange):
    set_quote(exchange)  # ask 190.02
    sender = new_sender()
    client = exchange.fix_client(sender)
    try:
        client.logon()  # in 1, out 1
        wait_for_session_state(
            exchange, sender, next_out=2, next_in=2, feed_cursor=0, feed_last_seq=0
        )
        client.order(new_id(), price="189.00")  # in 2; it rests: out 2, feed 1
        assert client.expect("8").get(150) == "0"
        wait_for_session_state(
            exchange, sender, next_out=3, next_in=3, feed_cursor=1, feed_last_seq=1
        )
        client.send("5", [])  # in 3, answered by out 3
        assert client.expect("5").seq == 3
        assert client.closed_by_peer()
    finally:
        client.close()

    # Logged off: the fill is on the feed, not sent yet.
    set_quote(exchange, "188.50")  # ask 188.52 <= 189
    wait_for_session_state(
        exchange, sender, next_out=4, next_in=4, feed_cursor=1, feed_last_seq=2
    )
    again = exchange.fix_client(sender)
    again.next_out = 4
    try:
        assert again.logon().seq == 4
        fill = again.expect("8")  # out 5: the cursor catches up with the feed
        assert (fill.seq, fill.get(150)) == (5, "F")
        wait_for_session_state(
            exchange, sender, next_out=6, next_in=5, feed_cursor=2, feed_last_seq=2
        )
    finally:
        again.close()


# --- admin controls and bad requests ---


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/admin/quotes/AAPL", {"last": "0.5"}, "invalid_quote"),
        ("/admin/quotes/AAPL", {"last": "190.001"}, "invalid_quote"),
        ("/admin/quotes/AAPL", {"size": "-1"}, "invalid_quote"),
        ("/admin/quotes/AAPL", {"price": "1"}, "invalid_quote"),
        ("/admin/quotes/AAPL", [], "invalid_quote"),
        ("/admin/faults", {"error_rate": 2}, "invalid_faults"),
        ("/admin/faults", {"paths": "/quotes"}, "invalid_faults"),
        ("/admin/faults", {"drop_response_rate": 1}, "invalid_faults"),
    ],
)
def test_malformed_admin_requests_are_400(exchange, path, body, code):
    assert_problem(exchange.request("POST", path, body), 400, code)


BAD_BODIES = [
    b"{",
    b"not json",
    b"[]",
    b'"a string"',
    b"null",
    b"\xff\xfe\x00",
    b"[" * 60_000,  # deep nesting, under the 64 KiB body limit
    b'{"error_rate": NaN}',
    b'{"error_rate": Infinity}',
    b'{"seed": 1' + b"0" * 5000 + b"}",  # beyond Python's int digit limit
]


@pytest.mark.parametrize("raw", BAD_BODIES, ids=lambda raw: repr(raw[:20]))
def test_malformed_bodies_are_400_problems_and_change_nothing(exchange, raw):
    response = exchange.request("POST", "/admin/faults", raw=raw)
    problem = assert_problem(response, 400, response.json()["code"])
    assert problem["code"] in {"invalid_json", "invalid_faults"}
    faults = exchange.request("GET", "/admin/faults").json()
    assert faults["config"] == FaultConfig().to_json()


def test_bad_requests_keep_the_connection_usable(exchange):
    conn = exchange.connect()
    try:
        for raw in [b"{", b'{"error_rate": "NaN"}', b"[]"]:
            response = exchange.request("POST", "/admin/faults", raw=raw, conn=conn)
            assert response.status == 400
        assert_problem(
            exchange.request("POST", "/admin/quotes/ZZZZ", {"last": "10"}, conn=conn),
            404,
            "unknown_symbol",
        )
        assert_problem(exchange.request("GET", "/nowhere", conn=conn), 404, "not_found")
        assert_problem(
            exchange.request("DELETE", "/orders", raw=b"{}", conn=conn),
            405,
            "method_not_allowed",
        )
        assert_problem(
            exchange.request("GET", f"/orders/{new_id()}", conn=conn),
            404,
            "unknown_order",
        )
        assert exchange.request("GET", "/healthz", conn=conn).status == 200
    finally:
        conn.close()


def test_protocol_errors_are_problems(exchange):
    with socket.create_connection(("127.0.0.1", exchange.port), timeout=10) as sock:
        sock.sendall(
            b"POST /admin/faults HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"
        )
        reply = sock.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 400")
    assert "application/problem+json" in reply
    assert "invalid_content_length" in reply

    with socket.create_connection(("127.0.0.1", exchange.port), timeout=10) as sock:
        sock.sendall(b"BREW /orders HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 501")
    assert "application/problem+json" in reply

    big = exchange.request("POST", "/admin/faults", raw=b" " * (65 * 1024))
    assert_problem(big, 413, "payload_too_large")


def test_admin_closes_and_opens_the_market(exchange):
    set_quote(exchange)  # ask 190.02
    day, gtc, crossing = new_id(), new_id(), new_id()
    try:
        with fix_session(exchange, new_sender()) as client:
            client.order(day, price="189.00")
            client.order(gtc, price="189.00", tif="1")
            assert [m.get(150) for m in client.collect(2)] == ["0", "0"]

            closed = exchange.request("POST", "/admin/session/close").json()
            assert closed["is_open"] is False
            assert exchange.request("GET", "/clock").json()["is_open"] is False
            expired = client.expect("8")
            assert (expired.get(150), expired.get(11)) == ("C", day)
            assert exchange.request("GET", f"/orders/{gtc}").json()["status"] == "new"
            client.order(crossing, price="195.00")  # would cross; the market is shut
            assert client.expect("8").get(150) == "0"

            opened = exchange.request("POST", "/admin/session/open").json()
            assert opened["is_open"] is True
            fill = client.expect("8")  # opening matches the resting orders
            assert (fill.get(150), fill.get(11)) == ("F", crossing)
    finally:
        exchange.request("POST", "/admin/session/open")


def test_scheduled_close_with_an_accelerated_clock(tmp_path):
    # Monday 15:59:00 at 30x: the 16:00 close comes 2 s of real time after the
    # start.
    process = ExchangeProcess(
        tmp_path / "x.db",
        tmp_path / "log",
        "0",
        env={
            "EXCHANGE_ALWAYS_OPEN": "0",
            "EXCHANGE_CLOCK_START": "2024-05-06T15:59:00Z",
            "EXCHANGE_CLOCK_SPEED": "30",
        },
    )
    try:
        clock = process.request("GET", "/clock").json()
        assert clock["is_open"] is True
        assert clock["next_close"] == "2024-05-06T16:00:00.000000Z"
        with fix_session(process) as client:
            client.order("day-1", price="100.00")
            client.order("gtc-1", price="100.00", tif="1")
            assert [m.get(150) for m in client.collect(2)] == ["0", "0"]
            expired = client.expect("8", timeout=10)  # the scheduled close
            assert (expired.get(150), expired.get(11)) == ("C", "day-1")
        clock = process.request("GET", "/clock").json()
        assert clock["is_open"] is False
        assert clock["session_date"] == "2024-05-07"
        assert clock["next_open"] == "2024-05-07T09:30:00.000000Z"
        assert process.request("GET", "/orders/gtc-1").json()["status"] == "new"
    finally:
        assert process.terminate() == 0, process.logs()


# --- HTTP faults (the market data by default) ---


def test_error_rate_answers_503_on_the_market_data_only(exchange):
    exchange.request("POST", "/admin/faults", {"error_rate": 1, "seed": 1})
    for path in ["/quotes/AAPL", "/symbols"]:
        assert_problem(exchange.request("GET", path), 503, "injected_error")
    # Not faulted: health, admin, and the introspection outside "paths".
    for path in ["/healthz", "/orders", "/fix/sessions"]:
        assert exchange.request("GET", path).status == 200, path
    assert exchange.request("GET", "/admin/faults").json()["counters"]["errors"] == 2


def test_latency_is_added(exchange):
    exchange.request("POST", "/admin/faults", {"latency_ms": 200, "paths": ["/quotes"]})
    started = time.monotonic()
    assert exchange.request("GET", "/quotes/AAPL").status == 200
    assert time.monotonic() - started >= 0.2
    assert exchange.request("GET", "/admin/faults").json()["counters"]["delayed"] == 1


def test_refuse_connections(exchange):
    exchange.request("POST", "/admin/faults", {"refuse_connections": True})
    with pytest.raises(CONNECTION_LOST):
        exchange.request("GET", "/quotes/AAPL")
    assert exchange.request("GET", "/healthz").status == 200
    assert exchange.request("GET", "/orders").status == 200
    counters = exchange.request("GET", "/admin/faults").json()["counters"]
    assert counters["refused_connections"] == 1
    exchange.request("POST", "/admin/faults", {})
    assert exchange.request("GET", "/quotes/AAPL").status == 200


# --- logs and the stop ---


def test_json_logs_with_log_format_json(tmp_path):
    """Like every role of the project: one JSON object per line, the event and
    its fields as keys."""
    process = ExchangeProcess(
        tmp_path / "orders.db", tmp_path / "log", env={"LOG_FORMAT": "json"}
    )
    try:
        with fix_session(process) as client:
            client.order("json-1")
            client.expect("8")
    finally:
        assert process.terminate() == 0, process.logs()
    lines = [json.loads(line) for line in process.logs().splitlines() if line]
    accepted = next(line for line in lines if line.get("event") == "order_accepted")
    assert (accepted["client_order_id"], accepted["session"]) == ("json-1", "BROKER-0")
    assert accepted["level"] == "INFO" and accepted["ts"].endswith("Z")
    assert any(line.get("event") == "listening" for line in lines)
    assert any(line.get("event") == "stopped" for line in lines)


def test_sigterm_with_an_idle_keep_alive_connection_exits_zero(tmp_path):
    process = ExchangeProcess(tmp_path / "orders.db", tmp_path / "log")
    conn = process.connect()
    try:
        assert process.request("GET", "/healthz", conn=conn).status == 200
        started = time.monotonic()
        assert process.terminate() == 0, process.logs()
        # The idle connection is closed at once, not after the socket timeout.
        assert time.monotonic() - started < 5
    finally:
        conn.close()


def test_sigterm_under_load_answers_or_cuts_every_request_cleanly(tmp_path):
    """Graceful stop: a request in flight is answered (never a 500 from a store
    already closed), the others see their connection closed, the exit code is
    0 and nothing is logged as a crash."""
    process = ExchangeProcess(tmp_path / "orders.db", tmp_path / "log")
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        conn = process.connect(timeout=5)
        try:
            while True:
                try:
                    response = process.request("GET", "/orders", conn=conn)
                except CONNECTION_LOST:
                    return  # the stop closed the connection
                with lock:
                    statuses.append(response.status)
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(statuses) >= 50, timeout=10, what="50 answers")
    finally:
        assert process.terminate() == 0, process.logs()
        for thread in threads:
            thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert set(statuses) == {200}
    assert "Traceback" not in process.logs()
