"""The matching engine: accepts orders exactly once per client_order_id.

Idempotency contract of :meth:`Exchange.submit`:

- first time a client_order_id is seen: the order is matched against the current
  quote, stored with its executions, and returned with ``created=True``;
- the same client_order_id with the same parameters: the stored order is returned
  unchanged (``created=False``) — no second order, no second execution, even if
  the quote has moved or the first attempt was rejected by its collar;
- the same client_order_id with other parameters: :class:`DuplicateOrderConflict`
  carrying the stored order.

A request refused before acceptance (unknown symbol) is not stored: resending it
is refused again the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from exchange_mock.logfmt import log_event
from exchange_mock.orders import (
    FILLED,
    Order,
    OrderRequest,
    format_decimal,
    format_price,
    match_market,
    order_id_for,
)
from exchange_mock.quotes import QuoteBook, utcnow
from exchange_mock.store import DuplicateOrderError, OrderStore

logger = logging.getLogger(__name__)


class UnknownSymbolError(LookupError):
    """The exchange does not list the symbol."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.symbol = symbol


class DuplicateOrderConflict(Exception):
    """The client_order_id is taken by an order with other parameters."""

    def __init__(self, existing: Order) -> None:
        super().__init__(existing.client_order_id)
        self.existing = existing


@dataclass(frozen=True)
class SubmitResult:
    order: Order
    created: bool


class Exchange:
    """Orders in, executions out. Thread-safe; the HTTP layer is a thin shell."""

    def __init__(
        self,
        quotes: QuoteBook,
        store: OrderStore,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.quotes = quotes
        self.store = store
        self._clock = clock
        # Serialises look-up + match + insert, so concurrent resends of one
        # client_order_id cannot both miss the look-up and create two orders.
        self._lock = threading.Lock()

    def submit(self, request: OrderRequest) -> SubmitResult:
        """Accept ``request`` at most once (see the module docstring)."""
        with self._lock:
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
                sequence = self.store.next_sequence()
                order = match_market(
                    request, quote, order_id_for(sequence), self._clock()
                )
                try:
                    self.store.insert(sequence, order)
                except DuplicateOrderError:
                    # Another writer on the same store file got there first.
                    existing = self.store.get(request.client_order_id)
                    if existing is None:
                        raise
                else:
                    self._log_new(order)
                    return SubmitResult(order, created=True)
        if existing.same_parameters(request):
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
        )
        raise DuplicateOrderConflict(existing)

    def get_order(self, client_order_id: str) -> Order | None:
        return self.store.get(client_order_id)

    def list_orders(self) -> list[Order]:
        return self.store.list_orders()

    def _log_new(self, order: Order) -> None:
        log_event(
            logger,
            "order_accepted",
            client_order_id=order.client_order_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            type=order.type,
            quantity=format_decimal(order.quantity),
            collar_price=(
                None if order.collar_price is None else format_price(order.collar_price)
            ),
        )
        if order.status == FILLED:
            for execution in order.executions:
                log_event(
                    logger,
                    "order_filled",
                    client_order_id=order.client_order_id,
                    order_id=order.order_id,
                    exec_id=execution.exec_id,
                    quantity=format_decimal(execution.quantity),
                    price=format_price(execution.price),
                )
        else:
            log_event(
                logger,
                "order_rejected",
                client_order_id=order.client_order_id,
                order_id=order.order_id,
                reason=order.reject_reason,
            )
