"""The real process over real HTTP: ``python -m exchange_mock`` as a subprocess."""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import threading
import time
from contextlib import closing
from decimal import Decimal

import pytest

from tests.exchange_mock.process import (
    ExchangeProcess,
    Response,
    assert_problem,
    new_id,
    order_body,
)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exchange")
    process = ExchangeProcess(tmp / "orders.db", tmp / "exchange.log")
    yield process
    assert process.terminate() == 0, process.logs()


@pytest.fixture
def frozen_exchange(tmp_path):
    """Quotes frozen (EXCHANGE_TICK_SECONDS=0) so fill prices are predictable."""
    process = ExchangeProcess(tmp_path / "orders.db", tmp_path / "log", "0")
    yield process
    process.terminate()


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
    assert_problem(exchange.request("GET", "/quotes/NOPE"), 404, "unknown_symbol")


def test_place_resend_and_conflict(exchange):
    cid = new_id()
    created = exchange.request("POST", "/orders", order_body(cid))
    assert created.status == 201
    order = created.json()
    assert order["client_order_id"] == cid
    assert order["order_id"].startswith("EX-")
    assert order["status"] == "filled"
    assert order["filled_quantity"] == "10"
    [execution] = order["executions"]
    assert execution["exec_id"] == order["order_id"] + "-1"
    assert order["average_price"] == execution["price"]

    # Same id, same parameters (quantity spelt differently): the same order.
    again = exchange.request("POST", "/orders", order_body(cid, quantity="10.000000"))
    assert again.status == 200
    assert again.json() == order

    assert exchange.request("GET", f"/orders/{cid}").json() == order

    conflict = exchange.request("POST", "/orders", order_body(cid, side="sell"))
    assert assert_problem(conflict, 409, "duplicate_client_order_id")["order"] == order

    listed = exchange.request("GET", f"/orders?client_order_id={cid}").json()
    assert listed["orders"] == [order]


def test_fills_at_the_quote_and_rejects_outside_the_collar(frozen_exchange):
    quote = frozen_exchange.request("GET", "/quotes/NVDA").json()
    buy = frozen_exchange.request(
        "POST", "/orders", order_body("b-1", symbol="NVDA", quantity="0.5")
    ).json()
    sell = frozen_exchange.request(
        "POST", "/orders", order_body("s-1", symbol="NVDA", side="sell")
    ).json()
    assert buy["executions"][0]["price"] == quote["ask"]
    assert sell["executions"][0]["price"] == quote["bid"]

    collar = str(Decimal(quote["ask"]) - Decimal("0.01"))
    rejected = frozen_exchange.request(
        "POST", "/orders", order_body("b-2", symbol="NVDA", collar_price=collar)
    )
    assert rejected.status == 201
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reject_reason"] == "price_outside_collar"
    assert rejected.json()["executions"] == []
    resent = frozen_exchange.request(
        "POST", "/orders", order_body("b-2", symbol="NVDA", collar_price=collar)
    )
    assert (resent.status, resent.json()) == (200, rejected.json())

    orders = frozen_exchange.request("GET", "/orders").json()["orders"]
    assert [o["client_order_id"] for o in orders] == ["b-1", "s-1", "b-2"]
    assert [o["order_id"] for o in orders] == ["EX-000001", "EX-000002", "EX-000003"]


def test_concurrent_duplicates_make_exactly_one_order(exchange):
    cid = new_id()
    barrier = threading.Barrier(20)
    responses: list[Response] = []
    errors: list[BaseException] = []

    def post() -> None:
        conn = exchange.connect()
        try:
            conn.connect()  # connect before the barrier: the POSTs race, not SYNs
            barrier.wait()
            responses.append(
                exchange.request("POST", "/orders", order_body(cid), conn=conn)
            )
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r.status for r in responses) == [200] * 19 + [201]
    assert len({r.raw_body for r in responses}) == 1  # byte-identical orders
    orders = exchange.request("GET", "/orders").json()["orders"]
    assert [o["client_order_id"] for o in orders].count(cid) == 1
    [order] = [o for o in orders if o["client_order_id"] == cid]
    assert len(order["executions"]) == 1


BAD_BODIES = [
    b"",
    b"{",
    b"not json",
    b"[]",
    b'"a string"',
    b"null",
    b"\xff\xfe\x00",
    b"[" * 60_000,  # deep nesting, under the 64 KiB body limit
    b'{"quantity": NaN}',
    b'{"quantity": Infinity}',
    b'{"client_order_id": "x", "quantity": 1' + b"0" * 5000 + b"}",
]
BAD_FIELDS = [
    {"quantity": "0"},
    {"quantity": "-5"},
    {"quantity": "NaN"},
    {"quantity": "Infinity"},
    {"quantity": "-Infinity"},
    {"quantity": "1e999999999"},
    {"quantity": "9" * 5000},
    {"quantity": "1.1234567"},
    {"quantity": 10},
    {"quantity": 1.5},
    {"quantity": None},
    {"quantity": ["1"]},
    {"side": "hold"},
    {"type": "stop"},
    {"limit_price": "190"},
    {"time_in_force": "gtc"},
    {"symbol": 42},
    {"client_order_id": ""},
    {"client_order_id": "x" * 65},
    {"client_order_id": None},
    {"collar_price": "-1"},
    {"collar_price": "abc"},
    {"unexpected": True},
]


@pytest.mark.parametrize("raw", BAD_BODIES, ids=lambda raw: repr(raw[:20]))
def test_malformed_bodies_are_400_problems(exchange, raw):
    response = exchange.request("POST", "/orders", raw=raw)
    assert response.status == 400
    problem = assert_problem(response, 400, response.json()["code"])
    assert problem["code"] in {"invalid_json", "invalid_order"}


@pytest.mark.parametrize("change", BAD_FIELDS, ids=lambda change: str(change)[:40])
def test_invalid_fields_are_400_invalid_order(exchange, change):
    body = {**order_body(new_id()), **change}
    problem = assert_problem(
        exchange.request("POST", "/orders", body), 400, "invalid_order"
    )
    assert set(problem["errors"]) == set(change)


def test_bad_requests_keep_the_connection_usable(exchange):
    conn = exchange.connect()
    try:
        for raw in [b"{", b'{"quantity": "NaN"}', b"[]"]:
            response = exchange.request("POST", "/orders", raw=raw, conn=conn)
            assert response.status == 400
        assert_problem(
            exchange.request(
                "POST", "/orders", order_body(new_id(), symbol="ZZZZ"), conn=conn
            ),
            422,
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


def test_unknown_symbol_is_not_stored(exchange):
    cid = new_id()
    response = exchange.request("POST", "/orders", order_body(cid, symbol="ZZZZ"))
    assert_problem(response, 422, "unknown_symbol")
    assert_problem(exchange.request("GET", f"/orders/{cid}"), 404, "unknown_order")


def test_protocol_errors_are_problems(exchange):
    with socket.create_connection(("127.0.0.1", exchange.port), timeout=10) as sock:
        sock.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n")
        reply = sock.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 400")
    assert "application/problem+json" in reply
    assert "invalid_content_length" in reply

    with socket.create_connection(("127.0.0.1", exchange.port), timeout=10) as sock:
        sock.sendall(b"BREW /orders HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = sock.makefile("rb").read().decode()
    assert reply.startswith("HTTP/1.1 501")
    assert "application/problem+json" in reply

    big = exchange.request("POST", "/orders", raw=b" " * (65 * 1024))
    assert_problem(big, 413, "payload_too_large")


def test_restart_keeps_orders(tmp_path):
    store = tmp_path / "orders.db"
    first = ExchangeProcess(store, tmp_path / "first.log")
    try:
        order = first.request("POST", "/orders", order_body("keep-1")).json()
    finally:
        assert first.terminate() == 0, first.logs()

    second = ExchangeProcess(store, tmp_path / "second.log")
    try:
        assert second.request("GET", "/orders/keep-1").json() == order
        resent = second.request("POST", "/orders", order_body("keep-1"))
        assert (resent.status, resent.json()) == (200, order)
        conflict = second.request("POST", "/orders", order_body("keep-1", side="sell"))
        assert_problem(conflict, 409, "duplicate_client_order_id")
        # The order-id sequence carries on: no id is handed out twice.
        fresh = second.request("POST", "/orders", order_body("keep-2")).json()
        assert fresh["order_id"] == "EX-000002"
        listed = second.request("GET", "/orders").json()["orders"]
        assert [o["client_order_id"] for o in listed] == ["keep-1", "keep-2"]
    finally:
        assert second.terminate() == 0, second.logs()
    assert "event=listening" in second.logs()
    assert "event=stopped" in second.logs()


def test_json_logs_with_log_format_json(tmp_path):
    """Like every role of the project: one JSON object per line, the event and
    its fields as keys."""
    process = ExchangeProcess(
        tmp_path / "orders.db", tmp_path / "log", env={"LOG_FORMAT": "json"}
    )
    try:
        process.request("POST", "/orders", order_body("json-1"))
    finally:
        assert process.terminate() == 0, process.logs()
    lines = [json.loads(line) for line in process.logs().splitlines() if line]
    accepted = next(line for line in lines if line.get("event") == "order_accepted")
    assert accepted["client_order_id"] == "json-1"
    assert accepted["level"] == "INFO" and accepted["ts"].endswith("Z")
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


def test_sigterm_under_load_answers_every_order_it_stores(tmp_path):
    """Graceful stop: an order the exchange stored was also answered (no order
    is processed after its connection was cut), and the exit code is 0."""
    store = tmp_path / "orders.db"
    process = ExchangeProcess(store, tmp_path / "log")
    answered: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        conn = process.connect(timeout=5)
        i = 0
        while not stop.is_set():
            i += 1
            cid = f"load-{n}-{i}"
            try:
                response = process.request(
                    "POST", "/orders", order_body(cid), conn=conn
                )
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = process.connect(timeout=5)
                time.sleep(0.01)
                continue
            if response.status == 201:
                with lock:
                    answered.add(cid)
        conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(answered) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert process.terminate() == 0, process.logs()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with closing(sqlite3.connect(store)) as db:
        stored = {row[0] for row in db.execute("SELECT client_order_id FROM orders")}
    assert len(answered) >= 50
    assert stored == answered
    assert "Traceback" not in process.logs()
