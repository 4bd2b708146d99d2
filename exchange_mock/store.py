"""SQLite persistence: orders, executions, report feeds, session epochs, the
market state, and the FIX sessions' tables (read and written by
:mod:`exchange_mock.fixstore` through :meth:`OrderStore.transaction`).

Contracts:

- ``client_order_id`` is UNIQUE, so the table itself refuses a second order for
  one id even if a caller bypassed the engine's lock;
- :meth:`OrderStore.commit` writes an order's new state, its new executions and
  the reports of the change in ONE transaction: the feed never shows a change
  the order table lacks, or the reverse, even across a crash;
- report seqs are per session, from 1, without gaps, assigned in that
  transaction;
- with a file path everything survives a restart; ``:memory:`` lives as long as
  the process. One process per store file (the engine keeps open orders in
  memory).

One connection shared by all threads, guarded by one lock: the exchange's write
rate is tiny and this keeps sqlite3's threading rules out of the picture.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from exchange_mock.orders import Execution, Order

SCHEMA_VERSION = 2

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
    created_at TEXT NOT NULL,
    session_id TEXT NOT NULL DEFAULT 'default',
    time_in_force TEXT NOT NULL DEFAULT 'day',
    limit_price TEXT,
    updated_at TEXT
);
CREATE INDEX IF NOT EXISTS orders_open ON orders (seq)
    WHERE status IN ('new', 'partially_filled');
CREATE TABLE IF NOT EXISTS executions (
    exec_id TEXT PRIMARY KEY,
    order_seq INTEGER NOT NULL REFERENCES orders (seq),
    n INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    price TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    UNIQUE (order_seq, n)
);
CREATE TABLE IF NOT EXISTS reports (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- FIX sessions (exchange_mock.fixstore). New tables only, created on every
-- start: no version bump, an older exchange opening the file just ignores them.
CREATE TABLE IF NOT EXISTS fix_sessions (
    session_id TEXT PRIMARY KEY,
    next_out INTEGER NOT NULL CHECK (next_out >= 1),
    next_in INTEGER NOT NULL CHECK (next_in >= 1),
    feed_cursor INTEGER NOT NULL CHECK (feed_cursor >= 0)
);
CREATE TABLE IF NOT EXISTS fix_journal (
    session_id TEXT NOT NULL REFERENCES fix_sessions (session_id),
    seq INTEGER NOT NULL,
    msg_type TEXT NOT NULL,
    sending_time TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);
"""

# Version 1 (market orders only) had no sessions, time in force or limit price.
_MIGRATE_FROM_1 = """
ALTER TABLE orders ADD COLUMN session_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE orders ADD COLUMN time_in_force TEXT NOT NULL DEFAULT 'day';
ALTER TABLE orders ADD COLUMN limit_price TEXT;
ALTER TABLE orders ADD COLUMN updated_at TEXT;
"""

_ORDER_COLUMNS = (
    "seq, order_id, client_order_id, symbol, side, type, quantity, collar_price, "
    "status, reject_reason, created_at, session_id, time_in_force, limit_price, "
    "updated_at"
)


class DuplicateOrderError(Exception):
    """An order with this client_order_id (or order_id) is already stored."""


class StoreVersionError(sqlite3.DatabaseError):
    """The store file was written by a newer version of the exchange."""


class OrderStore:
    """Orders, executions, feeds and epochs in SQLite. Thread-safe; close() when
    done."""

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
            self._migrate()

    def _migrate(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{self.path}: schema version {version} is newer than "
                f"{SCHEMA_VERSION}; use a newer exchange_mock or another store"
            )
        # One transaction (user_version is transactional too): a crash halfway
        # leaves the old version, which migrates again at the next start.
        migration = _MIGRATE_FROM_1 if version == 1 else ""
        self._conn.executescript(
            f"BEGIN; {migration} {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; "
            "COMMIT;"
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """The store's connection, under its lock, in one transaction: committed
        when the block ends, rolled back if it raises. For the FIX session state
        (:mod:`exchange_mock.fixstore`), which shares this file and this lock."""
        with self._lock, self._conn:
            yield self._conn

    # --- orders ---

    def next_sequence(self) -> int:
        """The sequence number the next inserted order should use.

        Callers serialise allocate-then-insert (the engine holds its lock), so
        two orders never get the same number; the UNIQUE order_id backs that up.
        """
        with self._lock:
            row = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM orders")
            return int(row.fetchone()[0]) + 1

    def insert(self, sequence: int, order: Order) -> None:
        """Store a new order and its executions (no reports)."""
        self.commit(order, (), sequence=sequence)

    def commit(
        self,
        order: Order,
        reports: Sequence[dict[str, Any]],
        *,
        sequence: int | None = None,
    ) -> int:
        """In one transaction: insert (``sequence`` given) or update ``order``,
        add its executions not stored yet, and append ``reports`` to the feed of
        its session. Returns the seq of the last report (0 if none).

        Raises :class:`DuplicateOrderError` if a new order's client_order_id (or
        sequence) is taken; nothing is written then.
        """
        with self._lock:
            try:
                with self._conn:
                    if sequence is None:
                        sequence = self._update(order)
                    else:
                        self._insert(sequence, order)
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO executions "
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
                    return self._append_reports(order.session_id, reports)
            except sqlite3.IntegrityError as exc:
                raise DuplicateOrderError(order.client_order_id) from exc

    def _insert(self, sequence: int, order: Order) -> None:
        self._conn.execute(
            f"INSERT INTO orders ({_ORDER_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                order.session_id,
                order.time_in_force,
                _opt(order.limit_price),
                None if order.updated_at is None else order.updated_at.isoformat(),
            ),
        )

    def _update(self, order: Order) -> int:
        """Update the mutable columns; returns the order's seq."""
        row = self._conn.execute(
            "UPDATE orders SET status = ?, reject_reason = ?, updated_at = ? "
            "WHERE client_order_id = ? RETURNING seq",
            (
                order.status,
                order.reject_reason,
                None if order.updated_at is None else order.updated_at.isoformat(),
                order.client_order_id,
            ),
        ).fetchone()
        if row is None:
            raise LookupError(f"no stored order {order.client_order_id!r}")
        return int(row[0])

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

    def open_orders(self) -> list[Order]:
        """The orders that can still fill, in acceptance (arrival) order."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_ORDER_COLUMNS} FROM orders "
                "WHERE status IN ('new', 'partially_filled') ORDER BY seq"
            ).fetchall()
            return self._load(rows)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM orders").fetchone()[0])

    def counts_by_status(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT status, COUNT(*) FROM orders GROUP BY status"
            ).fetchall()
        return {status: int(count) for status, count in rows}

    def execution_count(self) -> int:
        with self._lock:
            return int(
                self._conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0]
            )

    # --- report feeds ---

    def _append_reports(
        self, session_id: str, reports: Sequence[dict[str, Any]]
    ) -> int:
        last = 0
        for body in reports:
            (last,) = self._conn.execute(
                "INSERT INTO reports (session_id, seq, type, client_order_id, body) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM reports "
                "WHERE session_id = ?), ?, ?, ?) RETURNING seq",
                (
                    session_id,
                    session_id,
                    body["type"],
                    body["client_order_id"],
                    json.dumps(body),
                ),
            ).fetchone()
        return last

    def reports_after(
        self, session_id: str, after: int, limit: int
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` reports of the session with seq > ``after``, by seq."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, body FROM reports WHERE session_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (session_id, after, limit),
            ).fetchall()
        return [{"seq": seq, **json.loads(body)} for seq, body in rows]

    def last_seq(self, session_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM reports WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            return int(row[0])

    # --- session epochs and the market state ---

    def get_epoch(self, session_id: str) -> int | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT epoch FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            return None if row is None else int(row[0])

    def set_epoch(self, session_id: str, epoch: int) -> None:
        """Raise the session's highest epoch to ``epoch`` (never lowers it)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO sessions (session_id, epoch) VALUES (?, ?) "
                "ON CONFLICT (session_id) DO UPDATE "
                "SET epoch = MAX(epoch, excluded.epoch)",
                (session_id, epoch),
            )

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = ?", (key,)
            ).fetchone()
            return None if row is None else str(row[0])

    def set_meta(self, values: dict[str, str]) -> None:
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(values.items()),
            )

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
                collar_price=_dec(collar),
                status=status,
                reject_reason=reject_reason,
                created_at=datetime.fromisoformat(created_at),
                executions=tuple(executions[seq]),
                session_id=session_id,
                time_in_force=time_in_force,
                limit_price=_dec(limit_price),
                updated_at=None
                if updated_at is None
                else (datetime.fromisoformat(updated_at)),
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
                session_id,
                time_in_force,
                limit_price,
                updated_at,
            ) in rows
        ]


def _opt(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)
