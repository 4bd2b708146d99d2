"""JSON wire formats: decimals travel as strings, times as ISO-8601 UTC with ``Z``.

Parsing refuses JSON numbers for decimals on purpose: a JSON number would pass
through a binary float somewhere on the client's side and arrive as 0.30000000004.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

CENT = Decimal("0.01")
PRICE_STEP = Decimal("0.000001")
# Accepted spellings of a decimal: digits with an optional point and exponent.
# Decimal() alone would also take "NaN", "Infinity", " 1 " and "1_000".
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_MAX_DECIMAL_CHARS = 40


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix (``datetime.fromisoformat`` reads it)."""
    return (
        moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def format_decimal(value: Decimal) -> str:
    """Plain notation without trailing zeros: 10.500000 -> "10.5", 1E+2 -> "100"."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def format_price(value: Decimal) -> str:
    """A price with at least 2 and at most 6 decimal places ("190.12")."""
    value = value.quantize(PRICE_STEP)
    if value == value.quantize(CENT):
        return str(value.quantize(CENT))
    return format_decimal(value)


def parse_decimal(
    raw: object,
    *,
    maximum: Decimal,
    step: Decimal,
    places: int,
    allow_zero: bool = False,
) -> tuple[Decimal | None, str | None]:
    """Parse a positive decimal string; returns (value, None) or (None, message).

    Refuses non-strings (JSON numbers would go through binary floats), NaN,
    infinities, negatives, zero (unless ``allow_zero``), more than ``places``
    decimal places and values above ``maximum``.
    """
    if not isinstance(raw, str):
        return None, 'must be a decimal string, e.g. "10.5"'
    if len(raw) > _MAX_DECIMAL_CHARS or not _DECIMAL_RE.fullmatch(raw):
        return None, "is not a valid decimal number"
    try:
        value = Decimal(raw)
    except InvalidOperation:  # pragma: no cover - the pattern already refuses these
        return None, "is not a valid decimal number"
    if value < 0 or (value == 0 and not allow_zero):
        return None, "must be at least 0" if allow_zero else "must be greater than 0"
    if value > maximum:
        return None, f"must be at most {maximum}"
    # Bounded above, so quantize cannot overflow the context's precision.
    if value.quantize(step) != value:
        return None, f"must have at most {places} decimal places"
    return value, None
