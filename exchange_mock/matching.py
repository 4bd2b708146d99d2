"""Matching: how an order moves through its states. Pure functions, no I/O.

Every function returns :class:`Change` values, each one state change of one order
(and so one execution report): ``new``, ``fill``, ``canceled``, ``expired`` or
``rejected``, carrying the order as it is right after that change.

Liquidity model (deterministic on purpose): the quote's ``size`` is available at
the bid and at the ask to EACH crossing order at EACH tick. One match fills
``min(leaves, size)`` as one execution at the touch:

- market buy at the ask, if no collar or ask <= collar; market sell at the bid,
  if no collar or bid >= collar;
- limit buy when ask <= limit, at the ask; limit sell when bid >= limit, at the
  bid (the order gets the better price, never a worse one than its limit).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from exchange_mock.orders import (
    BUY,
    CANCELED,
    EXPIRED,
    FILLED,
    IOC,
    LIMIT,
    MARKET,
    MARKET_CLOSED,
    NEW,
    PARTIALLY_FILLED,
    PRICE_OUTSIDE_COLLAR,
    REJECTED,
    Execution,
    Order,
)
from exchange_mock.quotes import Quote

# Report types (one per state change).
REPORT_NEW = "new"
REPORT_FILL = "fill"
REPORT_CANCELED = "canceled"
REPORT_EXPIRED = "expired"
REPORT_REJECTED = "rejected"


@dataclass(frozen=True)
class Change:
    """One state change: the report type, the order right after it, the
    execution for a ``fill``, and for a ``canceled`` asked for by a FIX
    OrderCancelRequest its ClOrdID (the report answers that request)."""

    type: str
    order: Order
    execution: Execution | None = None
    cancel_id: str | None = None


def executable_price(order: Order, quote: Quote) -> Decimal | None:
    """The price ``order`` would trade at against ``quote`` now, or None."""
    touch = quote.ask if order.side == BUY else quote.bid
    bound = order.limit_price if order.type == LIMIT else order.collar_price
    if bound is None:
        return touch
    within = touch <= bound if order.side == BUY else touch >= bound
    return touch if within else None


def collar_breached(order: Order, quote: Quote) -> bool:
    """Whether a market order's collar makes it unexecutable at ``quote``."""
    return (
        order.type == MARKET
        and order.collar_price is not None
        and (executable_price(order, quote) is None)
    )


def fill_once(order: Order, quote: Quote, now: datetime) -> Change | None:
    """One match of an open order against ``quote``, or None if it does not
    cross (or nothing is offered at the touch)."""
    if not order.is_open or quote.size <= 0:
        return None
    price = executable_price(order, quote)
    if price is None:
        return None
    leaves = order.leaves_quantity
    quantity = min(leaves, quote.size)
    execution = Execution(
        f"{order.order_id}-{len(order.executions) + 1}", quantity, price, now
    )
    filled = replace(
        order,
        status=FILLED if quantity == leaves else PARTIALLY_FILLED,
        executions=(*order.executions, execution),
        updated_at=now,
    )
    return Change(REPORT_FILL, filled, execution)


def on_arrival(
    order: Order, quote: Quote, market_open: bool, now: datetime
) -> list[Change]:
    """The changes of a just-accepted order (status ``new``); never empty.

    - market order while the market is closed: ``rejected`` (market_closed);
    - market order whose collar the touch breaches: ``rejected``
      (price_outside_collar), nothing filled;
    - otherwise one match against ``quote`` (only while open), then: ioc cancels
      the remainder at once; an unfilled day/gtc order reports ``new`` and rests;
      a partially filled one rests (its ``fill`` is its report).
    """
    if order.type == MARKET and not market_open:
        return [reject(order, MARKET_CLOSED, now)]
    if collar_breached(order, quote):
        return [reject(order, PRICE_OUTSIDE_COLLAR, now)]
    changes: list[Change] = []
    if market_open:
        fill = fill_once(order, quote, now)
        if fill is not None:
            changes.append(fill)
    current = changes[-1].order if changes else order
    if current.is_open:
        if order.time_in_force == IOC:
            changes.append(cancel(current, now))
        elif not changes:
            changes.append(Change(REPORT_NEW, current))
    return changes


def reject(order: Order, reason: str, now: datetime) -> Change:
    rejected = replace(order, status=REJECTED, reject_reason=reason, updated_at=now)
    return Change(REPORT_REJECTED, rejected)


def cancel(order: Order, now: datetime) -> Change:
    """Cancel an open order; executions already done stay."""
    assert order.status in (NEW, PARTIALLY_FILLED), order.status
    return Change(REPORT_CANCELED, replace(order, status=CANCELED, updated_at=now))


def expire(order: Order, now: datetime) -> Change:
    """Expire an open order at the session close; executions already done stay."""
    assert order.is_open, order.status
    return Change(REPORT_EXPIRED, replace(order, status=EXPIRED, updated_at=now))
