"""SQLite store: round trip, UNIQUE client_order_id, survives a reopen."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from exchange_mock.matching import on_arrival
from exchange_mock.orders import Order, parse_order_request
from exchange_mock.quotes import make_quote
from exchange_mock.store import DuplicateOrderError, OrderStore, StoreVersionError

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
QUOTE = make_quote("AAPL", Decimal("190.00"), NOW, 0)


def order(client_order_id="c-1", sequence=1, **extra):
    request = parse_order_request(
        {
            "client_order_id": client_order_id,
            "symbol": "AAPL",
            "side": "buy",
            "quantity": "1.25",
            "type": "market",
            **extra,
        }
    )
    accepted = Order.accept(request, f"EX-{sequence:06d}", "default", NOW)
    return on_arrival(accepted, QUOTE, True, NOW)[-1].order


def test_round_trip(tmp_path):
    store = OrderStore(str(tmp_path / "x.db"))
    filled, rejected = order("a", 1), order("b", 2, collar_price="1")
    store.insert(1, filled)
    store.insert(2, rejected)
    assert store.get("a") == filled
    assert store.get("b") == rejected
    assert store.get("zzz") is None
    assert store.list_orders() == [filled, rejected]
    assert store.next_sequence() == 3
    store.close()


def test_client_order_id_is_unique():
    store = OrderStore()
    store.insert(1, order("a", 1))
    with pytest.raises(DuplicateOrderError):
        store.insert(2, order("a", 2))
    assert store.count() == 1
    # The failed insert left nothing behind, executions included.
    assert len(store.list_orders()[0].executions) == 1
    store.close()


def test_orders_survive_a_reopen(tmp_path):
    path = str(tmp_path / "x.db")
    store = OrderStore(path)
    store.insert(1, order("a", 1))
    store.close()
    reopened = OrderStore(path)
    assert reopened.get("a") == order("a", 1)
    assert reopened.next_sequence() == 2
    reopened.close()


# The schema of version 1 (market orders only), as released.
V1_SCHEMA = """
CREATE TABLE orders (
    seq INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    client_order_id TEXT NOT NULL UNIQUE,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    type TEXT NOT NULL,
    quantity TEXT NOT NULL,
    collar_price TEXT,
    status TEXT NOT NULL,
    reject_reason TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE executions (
    exec_id TEXT PRIMARY KEY,
    order_seq INTEGER NOT NULL REFERENCES orders (seq),
    n INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    price TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    UNIQUE (order_seq, n)
);
INSERT INTO orders VALUES (1, 'EX-000001', 'old', 'AAPL', 'buy', 'market', '10',
    NULL, 'filled', NULL, '2024-05-01T12:00:00+00:00');
INSERT INTO executions VALUES ('EX-000001-1', 1, 1, '10', '190.02',
    '2024-05-01T12:00:00+00:00');
PRAGMA user_version = 1;
"""


def test_a_version_1_store_is_migrated(tmp_path):
    path = str(tmp_path / "v1.db")
    with closing(sqlite3.connect(path)) as db:
        db.executescript(V1_SCHEMA)
    store = OrderStore(path)
    old = store.get("old")
    assert (old.session_id, old.time_in_force, old.limit_price) == (
        "default",
        "day",
        None,
    )
    assert old.to_json()["updated_at"] == old.to_json()["created_at"]
    assert old.executions[0].price == Decimal("190.02")
    assert store.next_sequence() == 2
    assert store.last_seq("default") == 0
    store.close()
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_newer_store_is_refused(tmp_path):
    path = str(tmp_path / "v9.db")
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 9")
    with pytest.raises(StoreVersionError):
        OrderStore(path)
