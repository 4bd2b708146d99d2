"""SQLite persistence of orders and their executions.

Contract: ``client_order_id`` is UNIQUE, so the table itself refuses a second order
for one id even if a caller bypassed the engine's lock. With a file path the store
survives a restart (orders, executions and the order-id sequence); ``:memory:``
lives as long as the process.

One connection shared by all threads, guarded by one lock: the exchange's write
rate is tiny and this keeps sqlite3's threading rules out of the picture.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from decimal import Decimal

from exchange_mock.orders import Execution, Order

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
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
CREATE TABLE IF NOT EXISTS executions (
    exec_id TEXT PRIMARY KEY,
    order_seq INTEGER NOT NULL REFERENCES orders (seq),
    n INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    price TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    UNIQUE (order_seq, n)
);
"""

_ORDER_COLUMNS = (
    "seq, order_id, client_order_id, symbol, side, type, quantity, collar_price, "
    "status, reject_reason, created_at"
)


class DuplicateOrderError(Exception):
    """An order with this client_order_id (or order_id) is already stored."""


class OrderStore:
    """Orders and executions in SQLite. Thread-safe; close() when done."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, check_same_thread=False)
        with self._lock:
            # WAL + NORMAL: a crash may lose the last transactions of an OS crash,
            # never corrupt the file; fine for a simulator, and fast.
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            with self._conn:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def next_sequence(self) -> int:
        """The sequence number the next inserted order should use.

        Callers serialise allocate-then-insert (the engine holds its lock), so
        two orders never get the same number; the UNIQUE order_id backs that up.
        """
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM orders")
            return int(row.fetchone()[0]) + 1

    def insert(self, sequence: int, order: Order) -> None:
        """Store a new order and its executions in one transaction.

        Raises :class:`DuplicateOrderError` if the client_order_id (or the
        sequence) is taken; nothing is written then.
        """
        with self._lock:
            try:
                with self._conn:
                    self._conn.execute(
                        f"INSERT INTO orders ({_ORDER_COLUMNS}) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            sequence,
                            order.order_id,
                            order.client_order_id,
                            order.symbol,
                            order.side,
                            order.type,
                            str(order.quantity),
                            _opt(order.collar_price),
                            order.status,
                            order.reject_reason,
                            order.created_at.isoformat(),
                        ),
                    )
                    self._conn.executemany(
                        "INSERT INTO executions "
                        "(exec_id, order_seq, n, quantity, price, timestamp) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (
                                e.exec_id,
                                sequence,
                                n,
                                str(e.quantity),
                                str(e.price),
                                e.timestamp.isoformat(),
                            )
                            for n, e in enumerate(order.executions, start=1)
                        ],
                    )
            except sqlite3.IntegrityError as exc:
                raise DuplicateOrderError(order.client_order_id) from exc

    def get(self, client_order_id: str) -> Order | None:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?",
                (client_order_id,),
            ).fetchall()
            return self._load(rows)[0] if rows else None

    def list_orders(self) -> list[Order]:
        """Every stored order, in acceptance order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY seq"
            ).fetchall()
            return self._load(rows)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def _load(self, rows: list[tuple]) -> list[Order]:
        if not rows:
            return []
        executions: dict[int, list[Execution]] = {row[0]: [] for row in rows}
        # One query for all executions (chunked: SQLite limits bound parameters).
        seqs = list(executions)
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for seq, exec_id, quantity, price, timestamp in self._conn.execute(
                "SELECT order_seq, exec_id, quantity, price, timestamp "
                f"FROM executions WHERE order_seq IN ({marks}) ORDER BY order_seq, n",
                chunk,
            ):
                executions[seq].append(
                    Execution(
                        exec_id,
                        Decimal(quantity),
                        Decimal(price),
                        datetime.fromisoformat(timestamp),
                    )
                )
        return [
            Order(
                order_id=order_id,
                client_order_id=client_order_id,
                symbol=symbol,
                side=side,
                type=type_,
                quantity=Decimal(quantity),
                collar_price=None if collar is None else Decimal(collar),
                status=status,
                reject_reason=reject_reason,
                created_at=datetime.fromisoformat(created_at),
                executions=tuple(executions[seq]),
            )
            for (
                seq,
                order_id,
                client_order_id,
                symbol,
                side,
                type_,
                quantity,
                collar,
                status,
                reject_reason,
                created_at,
            ) in rows
        ]


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else str(value)
