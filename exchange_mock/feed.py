"""Execution-report feeds, one per session: the source of the FIX acceptor's
ExecutionReports.

Every state change of an order appends one report to its session's feed. The
store writes a report in the same transaction as the order change and assigns
its sequence number (per session, from 1, no gaps); :meth:`Feed.published` then
wakes the session's FIX pump. Contract of :meth:`Feed.read`: the reports with
seq > after, in seq order; when there are none it blocks (on a Condition, never
polling) until one is published or the wait runs out.

A report: ``{"seq", "type", "client_order_id", "execution" | null, "order",
"timestamp"}``, ``order`` being the whole order as it is right after the change.
Reports are immutable and may be read any number of times.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from exchange_mock.matching import Change
from exchange_mock.store import OrderStore
from exchange_mock.wire import isoformat


def report_body(change: Change) -> dict[str, Any]:
    """The report of ``change``, without its seq (the store assigns it). A
    cancel asked for over FIX adds ``cancel_client_order_id`` (the request's
    ClOrdID, which the ExecutionReport echoes)."""
    order = change.order
    body = {
        "type": change.type,
        "client_order_id": order.client_order_id,
        "execution": None if change.execution is None else change.execution.to_json(),
        "order": order.to_json(),
        "timestamp": isoformat(order.updated_at or order.created_at),
    }
    if change.cancel_id is not None:
        body["cancel_client_order_id"] = change.cancel_id
    return body


class Feed:
    """Reads and wake-ups of the per-session feeds. Thread-safe."""

    def __init__(self, store: OrderStore) -> None:
        self._store = store
        self._changed = threading.Condition()
        self._last_seq: dict[str, int] = {}  # cache of the store's MAX(seq)

    def last_seq(self, session_id: str) -> int:
        """The newest seq of the session's feed; 0 if it has none."""
        with self._changed:
            return self._cached_last_seq(session_id)

    def published(self, session_id: str, last_seq: int) -> None:
        """Reports up to ``last_seq`` are committed: wake the readers."""
        with self._changed:
            self._last_seq[session_id] = max(
                last_seq, self._last_seq.get(session_id, 0)
            )
            self._changed.notify_all()

    def read(
        self, session_id: str, after: int, limit: int, wait: float
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` reports with seq > ``after``; when there are none,
        waits up to ``wait`` seconds for one to be published."""
        deadline = time.monotonic() + wait
        with self._changed:
            while self._cached_last_seq(session_id) <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
        # Read outside the Condition: publishing (under the engine's lock) must
        # not queue behind a reader's query.
        return self._store.reports_after(session_id, after, limit)

    def _cached_last_seq(self, session_id: str) -> int:
        cached = self._last_seq.get(session_id)
        if cached is not None:
            return cached
        last = self._store.last_seq(session_id)
        # Only sessions with reports are cached: published() records the
        # first report of the others.
        if last:
            self._last_seq[session_id] = last
        return last
