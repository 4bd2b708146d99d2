"""Money, prices and quantities: their precision and their rounding, defined once.

Columns are NUMERIC(20, places) with the places below. Amounts of cash are cents;
prices are ticks of 0.0001. What the customer is charged or shown is rounded half
up; a hold is rounded up, so a fill within it can never cost more than was held.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, ROUND_UP, Decimal

# Digits after the point of the cash, quantity and price columns.
CASH_PLACES = 2
QUANTITY_PLACES = 6
PRICE_PLACES = 4
# Total digits of every money, price and quantity column.
COLUMN_DIGITS = 20

CENT = Decimal(1).scaleb(-CASH_PLACES)
PRICE_TICK = Decimal(1).scaleb(-PRICE_PLACES)
CASH_ASSET = "USD"


def to_cents(amount: Decimal, *, rounding: str = ROUND_HALF_UP) -> Decimal:
    """A cash amount in cents: half up unless the caller says otherwise."""
    return amount.quantize(CENT, rounding=rounding)


def to_ticks(price: Decimal, *, rounding: str = ROUND_HALF_UP) -> Decimal:
    """A price in ticks of 0.0001: half up unless the caller says otherwise."""
    return price.quantize(PRICE_TICK, rounding=rounding)


def hold_amount(quantity: Decimal, price: Decimal) -> Decimal:
    """Cash to hold for ``quantity`` at up to ``price``: rounded up to the cent."""
    return to_cents(quantity * price, rounding=ROUND_UP)


def market_value(quantity: Decimal, price: Decimal) -> Decimal:
    """What ``quantity`` shares are worth at ``price``, in cents (half up) — the
    same figure on every screen that shows it."""
    return to_cents(quantity * price)
