"""SQLite store: round trip, UNIQUE client_order_id, survives a reopen."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from exchange_mock.orders import match_market, parse_order_request
from exchange_mock.quotes import make_quote
from exchange_mock.store import DuplicateOrderError, OrderStore

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
    return match_market(request, QUOTE, f"EX-{sequence:06d}", NOW)


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
