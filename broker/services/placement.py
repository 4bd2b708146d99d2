"""PlaceTrade: the trade, its hold, its ledger entries and its outbox event commit in
one transaction or not at all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import ROUND_UP, Decimal

from django.conf import settings
from django.db import transaction

from broker.errors import InsufficientBuyingPower, InsufficientShares, UnknownSymbol
from broker.models import Account, Customer, LedgerEntry, Position, Trade
from broker.services.ledger import Posting, ledger_post
from broker.services.outbox import outbox_enqueue

logger = logging.getLogger(__name__)

Bucket = LedgerEntry.Bucket
CENT = Decimal("0.01")
PRICE_TICK = Decimal("0.0001")

# symbol -> last price, or None when the exchange does not list the symbol.
PriceSource = Callable[[str], Decimal | None]


def market_buy_hold(
    *, quantity: Decimal, last_price: Decimal, collar: Decimal
) -> tuple[Decimal, Decimal]:
    """(collar_price, cash to hold) of a market buy. Both round up, so a fill at or
    below the collar price can never cost more than the hold."""
    collar_price = (last_price * (1 + collar)).quantize(PRICE_TICK, rounding=ROUND_UP)
    hold = (quantity * collar_price).quantize(CENT, rounding=ROUND_UP)
    return collar_price, hold


def trade_place(
    *,
    customer: Customer,
    symbol: str,
    side: str,
    quantity: Decimal,
    order_type: str,
    price_source: PriceSource,
) -> Trade:
    """Accept a trade: lock the account row, check buying power (buy) or free shares
    (sell), then insert the trade, its hold, the hold's ledger entries and the
    ``trade.placed`` outbox event, all in one transaction.

    The quote is fetched before the transaction: no network call holds the lock.
    Raises UnknownSymbol, InsufficientBuyingPower or InsufficientShares, having
    written nothing.
    """
    last_price = price_source(symbol)
    if last_price is None:
        raise UnknownSymbol(f"{symbol} is not traded on the exchange", field="symbol")

    with transaction.atomic():
        account = Account.objects.select_for_update().get(customer=customer)
        if side == Trade.Side.BUY:
            collar_price, hold = market_buy_hold(
                quantity=quantity, last_price=last_price, collar=settings.BUY_COLLAR
            )
            if hold > account.buying_power:
                raise InsufficientBuyingPower(
                    f"buying {quantity} {symbol} needs {hold} held; "
                    f"buying power is {account.buying_power}",
                    required=str(hold),
                    buying_power=str(account.buying_power),
                )
            hold_postings = [Posting(Bucket.RESERVED_CASH, hold)]
        else:
            collar_price, hold = None, quantity
            position = Position.objects.filter(account=account, symbol=symbol).first()
            free = (
                position.quantity - position.reserved_quantity
                if position
                else Decimal(0)
            )
            if quantity > free:
                raise InsufficientShares(
                    f"selling {quantity} {symbol} but only {free} are free",
                    available=str(free),
                )
            hold_postings = [Posting(Bucket.RESERVED_POSITION, hold, symbol)]

        trade = Trade.objects.create(
            account=account,
            symbol=symbol,
            side=side,
            type=order_type,
            quantity=quantity,
            collar_price=collar_price,
            hold_remaining=hold,
        )
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.HOLD,
            postings=hold_postings,
            trade=trade,
        )
        outbox_enqueue(
            customer_id=customer.pk,
            event_type="trade.placed",
            payload={"trade_id": str(trade.id), "customer_id": customer.pk},
        )
    logger.info(
        "trade accepted trade=%s customer=%s %s %s %s",
        trade.id,
        customer.pk,
        side,
        quantity,
        symbol,
    )
    return trade
