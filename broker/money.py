"""Money, prices and quantities: their precision and their rounding, defined once.

Columns are NUMERIC(20, places) with the places below. Amounts of cash are cents;
prices are ticks of 0.0001. What the customer is charged or shown is rounded half
up; a hold is rounded up, so a fill within it can never cost more than was held.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, ROUND_UP, Decimal

# Digits after the point of the cash, quantity and price columns.
CASH_PLACES = 2
QUANTITY_PLACES = 6
PRICE_PLACES = 4
# Total digits of every money, price and quantity column.
COLUMN_DIGITS = 20

CENT = Decimal(1).scaleb(-CASH_PLACES)
PRICE_TICK = Decimal(1).scaleb(-PRICE_PLACES)
CASH_ASSET = "USD"


def column_max(places: int) -> Decimal:
    """The largest value a NUMERIC(COLUMN_DIGITS, places) column holds."""
    return Decimal(10) ** (COLUMN_DIGITS - places) - Decimal(1).scaleb(-places)


# --- Order bounds, derived from the columns ------------------------------------
# A hold is a ledger amount and a trade's hold_remaining, both quantity columns
# (the narrowest the hold passes through; the cash columns have more integer
# digits): the largest hold is that column's largest whole number of cents.
MAX_HOLD = column_max(QUANTITY_PLACES).quantize(CENT, rounding=ROUND_DOWN)
# The widest market-buy collar the settings accept (BUY_COLLAR): 100 %.
MAX_BUY_COLLAR = Decimal(1)
# The highest price traded: a limit price, or the last price a market order is
# placed against (above it the exchange's quote is refused, not trusted).
MAX_PRICE = Decimal(10) ** 6
# The largest order quantity: the power of ten that keeps MAX_QUANTITY x
# MAX_PRICE x (1 + MAX_BUY_COLLAR), rounded up to the tick and to the cent,
# within MAX_HOLD — so every accepted order's hold fits its columns.
MAX_QUANTITY = Decimal(10) ** (MAX_HOLD / (MAX_PRICE * (1 + MAX_BUY_COLLAR))).adjusted()


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
