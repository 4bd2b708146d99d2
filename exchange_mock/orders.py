"""Orders: request validation, the order and execution records, market matching.

Pure domain logic with no I/O: the HTTP layer turns a JSON body into an
:class:`OrderRequest` via :func:`parse_order_request`; the engine matches it with
:func:`match_market` and persists the resulting :class:`Order`.

Numbers are :class:`~decimal.Decimal` everywhere and travel as JSON strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from exchange_mock.quotes import Quote, isoformat

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)
MARKET = "market"
ORDER_TYPES = (MARKET,)

FILLED = "filled"
REJECTED = "rejected"
PRICE_OUTSIDE_COLLAR = "price_outside_collar"

MAX_QUANTITY = Decimal("1000000000")
MAX_PRICE = Decimal("1000000000")
QUANTITY_STEP = Decimal("0.000001")  # at most 6 decimal places
PRICE_STEP = Decimal("0.000001")
# Accepted spellings of a decimal: digits with an optional point and exponent.
# Decimal() alone would also take "NaN", "Infinity", " 1 " and "1_000".
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_MAX_DECIMAL_CHARS = 40
# Safe in a URL path segment and in a log line, long enough for a UUID and prefix.
CLIENT_ORDER_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

FIELDS = frozenset(
    {"client_order_id", "symbol", "side", "quantity", "type", "collar_price"}
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


@dataclass(frozen=True)
class Execution:
    """One fill. ``exec_id`` is globally unique: ``<order_id>-<n>``."""

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
    """An order the exchange accepted (and stored), with its executions."""

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

    @property
    def filled_quantity(self) -> Decimal:
        return sum((e.quantity for e in self.executions), Decimal(0))

    @property
    def average_price(self) -> Decimal | None:
        filled = self.filled_quantity
        if not filled:
            return None
        notional = sum((e.quantity * e.price for e in self.executions), Decimal(0))
        return notional / filled

    def same_parameters(self, request: OrderRequest) -> bool:
        """Whether ``request`` is a resend of this order (numbers compared by value,
        so "10" and "10.000000" are the same quantity)."""
        return (
            self.client_order_id == request.client_order_id
            and self.symbol == request.symbol
            and self.side == request.side
            and self.type == request.type
            and self.quantity == request.quantity
            and self.collar_price == request.collar_price
        )

    def to_json(self) -> dict[str, Any]:
        average = self.average_price
        return {
            "client_order_id": self.client_order_id,
            "order_id": self.order_id,
            "symbol": self.symbol,
            "side": self.side,
            "type": self.type,
            "quantity": format_decimal(self.quantity),
            "collar_price": (
                None if self.collar_price is None else format_price(self.collar_price)
            ),
            "status": self.status,
            "filled_quantity": format_decimal(self.filled_quantity),
            "average_price": None if average is None else format_price(average),
            "reject_reason": self.reject_reason,
            "executions": [e.to_json() for e in self.executions],
            "created_at": isoformat(self.created_at),
        }


def format_decimal(value: Decimal) -> str:
    """Plain notation without trailing zeros: 10.500000 -> "10.5", 1E+2 -> "100"."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def format_price(value: Decimal) -> str:
    """A price with at least 2 and at most 6 decimal places ("190.12")."""
    value = value.quantize(PRICE_STEP)
    if value == value.quantize(Decimal("0.01")):
        return str(value.quantize(Decimal("0.01")))
    return format_decimal(value)


def parse_decimal(
    raw: object, *, maximum: Decimal, step: Decimal, places: int
) -> tuple[Decimal | None, str | None]:
    """Parse a positive decimal string; returns (value, None) or (None, message).

    Refuses non-strings (JSON numbers would go through binary floats), NaN,
    infinities, zero, negatives, more than ``places`` decimal places and values
    above ``maximum``.
    """
    if not isinstance(raw, str):
        return None, 'must be a decimal string, e.g. "10.5"'
    if len(raw) > _MAX_DECIMAL_CHARS or not _DECIMAL_RE.fullmatch(raw):
        return None, "is not a valid decimal number"
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern already refuses these
        return None, "is not a valid decimal number"
    if value <= 0:
        return None, "must be greater than 0"
    if value > maximum:
        return None, f"must be at most {maximum}"
    # Bounded above, so quantize cannot overflow the context's precision.
    if value.quantize(step) != value:
        return None, f"must have at most {places} decimal places"
    return value, None


def parse_order_request(body: object) -> OrderRequest:
    """Validate a decoded JSON body; raises :class:`OrderValidationError`.

    Unknown fields are refused rather than ignored: a misspelt ``collar_price``
    would otherwise silently send an order without its price protection.
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
        error("type", "must be one of: market")

    quantity = None
    if body.get("quantity") is not None:
        quantity, message = parse_decimal(
            body["quantity"], maximum=MAX_QUANTITY, step=QUANTITY_STEP, places=6
        )
        if message:
            error("quantity", message)
    collar_price = None
    if body.get("collar_price") is not None:
        collar_price, message = parse_decimal(
            body["collar_price"], maximum=MAX_PRICE, step=PRICE_STEP, places=6
        )
        if message:
            error("collar_price", message)

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
    )


def order_id_for(sequence: int) -> str:
    """The exchange-assigned order id of the ``sequence``-th order: EX-000001."""
    return f"EX-{sequence:06d}"


def collar_breached(request: OrderRequest, quote: Quote) -> bool:
    """Whether the price a market order would get is worse than its collar."""
    if request.collar_price is None:
        return False
    if request.side == BUY:
        return quote.ask > request.collar_price
    return quote.bid < request.collar_price


def match_market(
    request: OrderRequest, quote: Quote, order_id: str, now: datetime
) -> Order:
    """Match a market order against ``quote``: all or nothing, at once.

    A buy fills in full at the ask, a sell at the bid, in one execution — unless
    the price is outside the collar, in which case the order is rejected
    (``price_outside_collar``) with no execution. Either way the result is an
    accepted order to store, so a resend returns the same outcome.
    """
    common = {
        "order_id": order_id,
        "client_order_id": request.client_order_id,
        "symbol": request.symbol,
        "side": request.side,
        "type": request.type,
        "quantity": request.quantity,
        "collar_price": request.collar_price,
        "created_at": now,
    }
    if collar_breached(request, quote):
        return Order(status=REJECTED, reject_reason=PRICE_OUTSIDE_COLLAR, **common)
    price = quote.ask if request.side == BUY else quote.bid
    execution = Execution(f"{order_id}-1", request.quantity, price, now)
    return Order(status=FILLED, executions=(execution,), **common)
