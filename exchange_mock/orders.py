"""Orders: request validation and the order and execution records.

Pure domain logic with no I/O: the FIX layer turns a NewOrderSingle into the
fields of an :class:`OrderRequest`, validated by :func:`parse_order_request`;
:mod:`exchange_mock.matching` moves an :class:`Order` through its states; the
engine persists it.

Numbers are :class:`~decimal.Decimal` everywhere and travel as JSON strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from exchange_mock.wire import (
    PRICE_STEP,
    format_decimal,
    format_price,
    isoformat,
    parse_decimal,
)

# Re-exported: callers and tests format order numbers through this module.
__all__ = ["format_decimal", "format_price", "parse_decimal"]

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)
MARKET = "market"
LIMIT = "limit"
ORDER_TYPES = (MARKET, LIMIT)
DAY = "day"
GTC = "gtc"
IOC = "ioc"
TIMES_IN_FORCE = (DAY, GTC, IOC)

NEW = "new"
PARTIALLY_FILLED = "partially_filled"
FILLED = "filled"
CANCELED = "canceled"
EXPIRED = "expired"
REJECTED = "rejected"
OPEN_STATUSES = frozenset({NEW, PARTIALLY_FILLED})

PRICE_OUTSIDE_COLLAR = "price_outside_collar"
MARKET_CLOSED = "market_closed"

# Orders submitted to the engine without a fence (no FIX session: unit tests,
# tools) belong to this session.
DEFAULT_SESSION = "default"

MAX_QUANTITY = Decimal("1000000000")
MAX_PRICE = Decimal("1000000000")
QUANTITY_STEP = Decimal("0.000001")  # at most 6 decimal places
LIMIT_PRICE_STEP = Decimal("0.0001")  # at most 4 decimal places
# Safe in a URL path segment and in a log line, long enough for a UUID and prefix.
CLIENT_ORDER_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

FIELDS = frozenset(
    {
        "client_order_id",
        "symbol",
        "side",
        "quantity",
        "type",
        "time_in_force",
        "limit_price",
        "collar_price",
    }
)
REQUIRED = ("client_order_id", "symbol", "side", "quantity", "type")


class OrderValidationError(ValueError):
    """The request is malformed; ``errors`` maps each bad field to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class OrderRequest:
    """A well-formed order as a client sent it (symbol not yet checked)."""

    client_order_id: str
    symbol: str
    side: str
    quantity: Decimal
    type: str = MARKET
    collar_price: Decimal | None = None
    time_in_force: str = DAY
    limit_price: Decimal | None = None


@dataclass(frozen=True)
class Execution:
    """One fill. ``exec_id`` is globally unique: ``<order_id>-<n>``, n from 1."""

    exec_id: str
    quantity: Decimal
    price: Decimal
    timestamp: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "exec_id": self.exec_id,
            "quantity": format_decimal(self.quantity),
            "price": format_price(self.price),
            "timestamp": isoformat(self.timestamp),
        }


@dataclass(frozen=True)
class Order:
    """An order the exchange accepted (and stored), with its executions.

    Immutable: every state change makes a new value (``dataclasses.replace``).
    """

    order_id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    quantity: Decimal
    collar_price: Decimal | None
    status: str
    created_at: datetime
    reject_reason: str | None = None
    executions: tuple[Execution, ...] = field(default=())
    session_id: str = DEFAULT_SESSION
    time_in_force: str = DAY
    limit_price: Decimal | None = None
    updated_at: datetime | None = None  # None: never changed since created_at

    @classmethod
    def accept(
        cls, request: OrderRequest, order_id: str, session_id: str, now: datetime
    ) -> Order:
        """The order as accepted, before any matching: ``new``, nothing filled."""
        return cls(
            order_id=order_id,
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            quantity=request.quantity,
            collar_price=request.collar_price,
            status=NEW,
            created_at=now,
            session_id=session_id,
            time_in_force=request.time_in_force,
            limit_price=request.limit_price,
            updated_at=now,
        )

    @property
    def is_open(self) -> bool:
        """Whether the order can still fill (``new`` or ``partially_filled``)."""
        return self.status in OPEN_STATUSES

    @property
    def filled_quantity(self) -> Decimal:
        return sum((e.quantity for e in self.executions), Decimal(0))

    @property
    def leaves_quantity(self) -> Decimal:
        """What may still fill: the unfilled rest while open, 0 once terminal."""
        return self.quantity - self.filled_quantity if self.is_open else Decimal(0)

    @property
    def average_price(self) -> Decimal | None:
        filled = self.filled_quantity
        if not filled:
            return None
        notional = sum((e.quantity * e.price for e in self.executions), Decimal(0))
        return notional / filled

    def same_parameters(self, request: OrderRequest) -> bool:
        """Whether ``request`` is a resend of this order (numbers compared by value,
        so "10" and "10.000000" are the same quantity; an omitted time_in_force is
        the default "day")."""
        return (
            self.client_order_id == request.client_order_id
            and self.symbol == request.symbol
            and self.side == request.side
            and self.type == request.type
            and self.quantity == request.quantity
            and self.collar_price == request.collar_price
            and self.time_in_force == request.time_in_force
            and self.limit_price == request.limit_price
        )

    def to_json(self) -> dict[str, Any]:
        average = self.average_price
        return {
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "session_id": self.session_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "time_in_force": self.time_in_force,
            "quantity": format_decimal(self.quantity),
            "limit_price": _price_or_none(self.limit_price),
            "collar_price": _price_or_none(self.collar_price),
            "status": self.status,
            "filled_quantity": format_decimal(self.filled_quantity),
            "leaves_quantity": format_decimal(self.leaves_quantity),
            "average_price": _price_or_none(average),
            "reject_reason": self.reject_reason,
            "executions": [e.to_json() for e in self.executions],
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at or self.created_at),
        }


def _price_or_none(value: Decimal | None) -> str | None:
    return None if value is None else format_price(value)


def parse_order_request(body: object) -> OrderRequest:
    """Validate the fields of an order (a dict, as a decoded JSON body); raises
    :class:`OrderValidationError`.

    Unknown fields are refused rather than ignored: a misspelt ``collar_price``
    would otherwise silently send an order without its price protection. A field
    sent as JSON null counts as omitted.
    """
    if not isinstance(body, dict):
        raise OrderValidationError({"body": ["must be a JSON object"]})
    errors: dict[str, list[str]] = {}

    def error(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for name in sorted(set(body) - FIELDS):
        error(name, "unknown field")
    for name in REQUIRED:
        if body.get(name) is None:
            error(name, "is required")

    client_order_id = body.get("client_order_id")
    if client_order_id is not None and (
        not isinstance(client_order_id, str)
        or not CLIENT_ORDER_ID_RE.fullmatch(client_order_id)
    ):
        error(
            "client_order_id",
            "must be a string of 1 to 64 characters from A-Z a-z 0-9 . _ : -",
        )
    symbol = body.get("symbol")
    if symbol is not None and (
        not isinstance(symbol, str) or not 1 <= len(symbol) <= 16
    ):
        error("symbol", "must be a string of 1 to 16 characters")
    side = body.get("side")
    if side is not None and side not in SIDES:
        error("side", "must be one of: buy, sell")
    order_type = body.get("type")
    if order_type is not None and order_type not in ORDER_TYPES:
        error("type", "must be one of: market, limit")
    time_in_force = body.get("time_in_force")
    if time_in_force is None:
        time_in_force = DAY
    elif time_in_force not in TIMES_IN_FORCE:
        error("time_in_force", "must be one of: day, gtc, ioc")
    elif order_type == MARKET and time_in_force == GTC:
        error("time_in_force", "market orders are day orders: use day or ioc")

    def decimal(name: str, step: Decimal, places: int, maximum: Decimal) -> Any:
        if body.get(name) is None:
            return None
        value, message = parse_decimal(
            body[name], maximum=maximum, step=step, places=places
        )
        if message:
            error(name, message)
        return value

    quantity = decimal("quantity", QUANTITY_STEP, 6, MAX_QUANTITY)
    collar_price = decimal("collar_price", PRICE_STEP, 6, MAX_PRICE)
    limit_price = decimal("limit_price", LIMIT_PRICE_STEP, 4, MAX_PRICE)
    if order_type == LIMIT:
        if body.get("limit_price") is None:
            error("limit_price", "is required for limit orders")
        if body.get("collar_price") is not None:
            error("collar_price", "is only allowed on market orders")
    elif order_type == MARKET and body.get("limit_price") is not None:
        error("limit_price", "is not allowed on market orders")

    if errors:
        raise OrderValidationError(errors)
    assert quantity is not None  # for type checkers: required and valid
    return OrderRequest(
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,
        quantity=quantity,
        type=order_type,
        collar_price=collar_price,
        time_in_force=time_in_force,
        limit_price=limit_price,
    )


def order_id_for(sequence: int) -> str:
    """The exchange-assigned order id of the ``sequence``-th order: EX-000001."""
    return f"EX-{sequence:06d}"
