"""The matching engine: orders and cancels in; executions and reports out.

Idempotency contract of :meth:`Exchange.submit`:

- first time a client_order_id is seen: the order is accepted, matched against
  the current quote (:func:`~exchange_mock.matching.on_arrival`), stored with its
  executions and reports, and returned with ``created=True``;
- the same client_order_id with the same parameters from the same session: the
  stored order is returned AS IT IS NOW (``created=False``) — no second order, no
  second execution, even if the quote has moved or the first attempt was
  rejected;
- the same client_order_id with other parameters, or from another session:
  :class:`DuplicateOrderConflict` carrying the stored order.

A request refused before acceptance (malformed, stale epoch, unknown symbol) is
not stored: resending it is refused again the same way.

:meth:`Exchange.cancel` is idempotent too: an open order becomes ``canceled``
once; a terminal order (including one whose fill won the race) is returned
unchanged.

Fencing: every mutation admits its :class:`~exchange_mock.sessions.Fence` under
the engine's lock, in the same critical section as the mutation, so once a
higher epoch is admitted no request with a lower one can act any more.

Resting orders are matched on every quote change of their symbol, in arrival
order, while the market is open; the session close expires the open ``day``
orders. Every state change is stored together with its report (one
transaction) and then published to the session's feed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from exchange_mock.clock import MarketHours
from exchange_mock.faults import Faults
from exchange_mock.feed import Feed, report_body
from exchange_mock.logfmt import log_event
from exchange_mock.matching import (
    REPORT_FILL,
    REPORT_REJECTED,
    Change,
    cancel,
    expire,
    fill_once,
    on_arrival,
)
from exchange_mock.orders import (
    DAY,
    DEFAULT_SESSION,
    Order,
    OrderRequest,
    format_decimal,
    format_price,
    order_id_for,
)
from exchange_mock.quotes import Quote, QuoteBook
from exchange_mock.sessions import EpochRegistry, Fence
from exchange_mock.store import DuplicateOrderError, OrderStore
from exchange_mock.wire import isoformat, utcnow

logger = logging.getLogger(__name__)


class UnknownSymbolError(LookupError):
    """The exchange does not list the symbol."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.symbol = symbol


class UnknownOrderError(LookupError):
    """No order with this client_order_id in the caller's session."""

    def __init__(self, client_order_id: str) -> None:
        super().__init__(client_order_id)
        self.client_order_id = client_order_id


class DuplicateOrderConflict(Exception):
    """The client_order_id is taken by an order with other parameters (or of
    another session: ``same_session`` False)."""

    def __init__(self, existing: Order, same_session: bool = True) -> None:
        super().__init__(existing.client_order_id)
        self.existing = existing
        self.same_session = same_session


@dataclass(frozen=True)
class SubmitResult:
    order: Order
    created: bool


class Exchange:
    """Orders in, executions out. Thread-safe; the FIX layer
    (:mod:`exchange_mock.fixapp`) is a thin shell."""

    def __init__(
        self,
        quotes: QuoteBook,
        store: OrderStore,
        clock: Callable[[], datetime] = utcnow,
        *,
        hours: MarketHours | None = None,
        faults: Faults | None = None,
    ) -> None:
        self.quotes = quotes
        self.store = store
        self.hours = hours or MarketHours()
        self.feed = Feed(store)
        self.epochs = EpochRegistry(store)
        self._clock = clock
        self._faults = faults or Faults()
        # Serialises every change of orders, epochs and the market state: one
        # order of events, so fencing, dedupe and matching need no other locks.
        self._lock = threading.Lock()
        # Open orders by client_order_id, in arrival order (dicts keep it).
        self._open: dict[str, Order] = {
            o.client_order_id: o for o in store.open_orders()
        }
        self._market_open = False
        with self._lock:
            self._restore_market()
        quotes.subscribe(self.on_quotes)

    # --- orders ---

    def submit(self, request: OrderRequest, fence: Fence | None = None) -> SubmitResult:
        """Accept ``request`` at most once (see the module docstring). Unfenced
        orders belong to the ``default`` session."""
        session_id = DEFAULT_SESSION if fence is None else fence.session_id
        with self._lock:
            if fence is not None:
                self.epochs.admit(fence)
            existing = self.store.get(request.client_order_id)
            if existing is None:
                quote = self.quotes.get(request.symbol)
                if quote is None:
                    log_event(
                        logger,
                        "order_refused",
                        client_order_id=request.client_order_id,
                        reason="unknown_symbol",
                        symbol=request.symbol,
                    )
                    raise UnknownSymbolError(request.symbol)
                created = self._accept(request, session_id, quote)
                if created is not None:
                    return SubmitResult(created, created=True)
                # Another writer on the same store file got there first.
                existing = self.store.get(request.client_order_id)
                if existing is None:  # pragma: no cover - the insert said taken
                    raise DuplicateOrderError(request.client_order_id)
        same_session = existing.session_id == session_id
        if same_session and existing.same_parameters(request):
            log_event(
                logger,
                "order_duplicate",
                client_order_id=existing.client_order_id,
                order_id=existing.order_id,
                status=existing.status,
                outcome="replayed",
            )
            return SubmitResult(existing, created=False)
        log_event(
            logger,
            "order_duplicate",
            logging.WARNING,
            client_order_id=existing.client_order_id,
            order_id=existing.order_id,
            outcome="conflict",
            same_session=same_session,
        )
        raise DuplicateOrderConflict(existing, same_session)

    def _accept(
        self, request: OrderRequest, session_id: str, quote: Quote
    ) -> Order | None:
        """Accept, match and store a new order; None if its id was taken."""
        sequence = self.store.next_sequence()
        now = self._clock()
        order = Order.accept(request, order_id_for(sequence), session_id, now)
        changes = on_arrival(order, quote, self._market_open, now)
        try:
            self._apply(changes, sequence=sequence)
        except DuplicateOrderError:
            return None
        return changes[-1].order

    def cancel(self, client_order_id: str, fence: Fence | None = None) -> Order:
        """Cancel an open order of the caller's session; idempotent (see the
        module docstring). Raises :class:`UnknownOrderError` for an order that
        does not exist or belongs to another session."""
        return self.cancel_request(client_order_id, fence)[0]

    def cancel_request(
        self,
        client_order_id: str,
        fence: Fence | None = None,
        cancel_id: str | None = None,
    ) -> tuple[Order, bool]:
        """:meth:`cancel`, also saying whether THIS call canceled the order
        (False: it was already terminal, returned unchanged). ``cancel_id``: the
        ClOrdID of a FIX OrderCancelRequest, stored with the canceled report."""
        session_id = DEFAULT_SESSION if fence is None else fence.session_id
        with self._lock:
            if fence is not None:
                self.epochs.admit(fence)
            order = self._open.get(client_order_id) or self.store.get(client_order_id)
            if order is None or order.session_id != session_id:
                raise UnknownOrderError(client_order_id)
            if not order.is_open:
                log_event(
                    logger,
                    "cancel_ignored",
                    client_order_id=client_order_id,
                    status=order.status,
                )
                return order, False
            change = replace(cancel(order, self._clock()), cancel_id=cancel_id)
            self._apply([change])
            return change.order, True

    def get_order(self, client_order_id: str) -> Order | None:
        return self.store.get(client_order_id)

    def order_snapshot(
        self, client_order_id: str, session_id: str
    ) -> tuple[Order | None, int]:
        """The order (None if unknown or of another session) and the newest seq
        of the session's feed, read together under the lock: the feed up to
        that seq holds every report of the order's state, and nothing later."""
        with self._lock:
            order = self._open.get(client_order_id) or self.store.get(client_order_id)
            if order is not None and order.session_id != session_id:
                order = None
            return order, self.store.last_seq(session_id)

    def list_orders(self) -> list[Order]:
        return self.store.list_orders()

    # --- sessions ---

    def logon(self, session_id: str, epoch: int) -> tuple[int, int]:
        """Admit ``epoch`` for the session (a FIX Logon; raises StaleEpoch);
        returns the epoch and the newest report seq of the session's feed."""
        with self._lock:
            self.epochs.admit(Fence(session_id, epoch))
            return epoch, self.feed.last_seq(session_id)

    # --- quotes and the market session ---

    def on_quotes(self, quotes: Mapping[str, Quote]) -> None:
        """Quote listener: match the open orders of the symbols that moved."""
        with self._lock:
            if self._market_open:
                self._match_resting(set(quotes))

    def close_market(self) -> dict[str, Any]:
        """Close the market now: every open day order expires. A no-op when
        already closed. Returns :meth:`clock_status`."""
        with self._lock:
            if self._market_open:
                now = self._clock()
                self._set_market(False, now)
                expired = self._expire_day_orders(now)
                log_event(logger, "market_closed", expired=expired)
        return self.clock_status()

    def open_market(self) -> dict[str, Any]:
        """Open the market now and match the resting orders. A no-op when
        already open. Returns :meth:`clock_status`."""
        with self._lock:
            if not self._market_open:
                self._set_market(True, self._clock())
                log_event(logger, "market_opened", resting=len(self._open))
                self._match_resting(None)
        return self.clock_status()

    def stats(self) -> dict[str, int]:
        with self._lock:
            open_orders = len(self._open)
        return {"orders": self.store.count(), "open_orders": open_orders}

    def clock_status(self) -> dict[str, Any]:
        now = self._clock()
        is_open = self._market_open
        next_open, next_close = self.hours.next_open(now), self.hours.next_close(now)
        return {
            "now": isoformat(now),
            "is_open": is_open,
            "session_date": self.hours.session_date(is_open, now).isoformat(),
            "next_close": None if next_close is None else isoformat(next_close),
            "next_open": None if next_open is None else isoformat(next_open),
            "always_open": self.hours.always_open,
        }

    # --- internals; the caller holds self._lock ---

    def _restore_market(self) -> None:
        """Resume the schedule after a (re)start. A session that ended while the
        exchange was down still ends its day orders."""
        now = self._clock()
        scheduled = self.hours.is_scheduled_open(now)
        stored = self.store.get_meta("session_date")
        if (
            not self.hours.always_open
            and stored is not None
            and date.fromisoformat(stored) < self.hours.session_date(scheduled, now)
        ):
            expired = self._expire_day_orders(now)
            log_event(logger, "missed_close", session_date=stored, expired=expired)
        self._set_market(scheduled, now)

    def _set_market(self, is_open: bool, now: datetime) -> None:
        self._market_open = is_open
        session_date = self.hours.session_date(is_open, now)
        self.store.set_meta(
            {"market_open": "1" if is_open else "0", "session_date": str(session_date)}
        )

    def _expire_day_orders(self, now: datetime) -> int:
        day_orders = [o for o in self._open.values() if o.time_in_force == DAY]
        for order in day_orders:
            self._apply([expire(order, now)])
        return len(day_orders)

    def _match_resting(self, symbols: set[str] | None) -> None:
        """One match of every open order (of ``symbols``; None: all), in arrival
        order, against the current quote (not a listener's snapshot: two
        threads moving quotes may deliver theirs out of order)."""
        now = self._clock()
        for order in list(self._open.values()):
            if symbols is not None and order.symbol not in symbols:
                continue
            quote = self.quotes.get(order.symbol)
            change = None if quote is None else fill_once(order, quote, now)
            if change is not None:
                self._apply([change])

    def _apply(self, changes: list[Change], sequence: int | None = None) -> None:
        """Store the order's new state with one report per change (two each with
        the duplicate_reports fault), then publish. ``sequence``: a new order."""
        order = changes[-1].order
        bodies = [report_body(change) for change in changes]
        copies = self._faults.report_copies(len(bodies))
        bodies = [body for body in bodies for _ in range(copies)]
        last_seq = self.store.commit(order, bodies, sequence=sequence)
        if order.is_open:
            self._open[order.client_order_id] = order
        else:
            self._open.pop(order.client_order_id, None)
        self.feed.published(order.session_id, last_seq)
        if sequence is not None:
            self._log_accepted(order)
        for change in changes:
            self._log_change(change)

    def _log_accepted(self, order: Order) -> None:
        log_event(
            logger,
            "order_accepted",
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            session=order.session_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force,
            quantity=format_decimal(order.quantity),
            limit_price=(
                None if order.limit_price is None else format_price(order.limit_price)
            ),
            collar_price=(
                None if order.collar_price is None else format_price(order.collar_price)
            ),
        )

    def _log_change(self, change: Change) -> None:
        order = change.order
        fields: dict[str, Any] = {
            "client_order_id": order.client_order_id,
            "order_id": order.order_id,
            "status": order.status,
        }
        if change.type == REPORT_FILL and change.execution is not None:
            fields.update(
                exec_id=change.execution.exec_id,
                quantity=format_decimal(change.execution.quantity),
                price=format_price(change.execution.price),
            )
        elif change.type == REPORT_REJECTED:
            fields["reason"] = order.reject_reason
        event = {"fill": "order_filled", "new": "order_resting"}.get(
            change.type, f"order_{change.type}"
        )
        log_event(logger, event, **fields)
