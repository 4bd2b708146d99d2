"""PlaceTrade: the trade, its hold, its ledger entries and its outbox event commit in
one transaction or not at all."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import ROUND_UP, Decimal

from django.conf import settings
from django.db import transaction

from broker.errors import (
    DuplicateClientOrderId,
    InsufficientBuyingPower,
    InsufficientShares,
    InvalidOrder,
    PriceOutOfRange,
    UnknownSymbol,
)
from broker.events import EventType
from broker.models import Account, Customer, LedgerEntry, Position, Trade, TradeEvent
from broker.money import MAX_PRICE, MAX_QUANTITY, hold_amount, to_ticks
from broker.services.ledger import Posting, ledger_post
from broker.services.outbox import outbox_enqueue_for_trade

logger = logging.getLogger(__name__)

Bucket = LedgerEntry.Bucket

# symbol -> last price, or None when the exchange does not list the symbol.
PriceSource = Callable[[str], Decimal | None]


def market_buy_hold(
    *, quantity: Decimal, last_price: Decimal, collar: Decimal
) -> tuple[Decimal, Decimal]:
    """(collar_price, cash to hold) of a market buy. Both round up, so a fill at or
    below the collar price can never cost more than the hold."""
    collar_price = to_ticks(last_price * (1 + collar), rounding=ROUND_UP)
    return collar_price, hold_amount(quantity, collar_price)


def limit_buy_hold(*, quantity: Decimal, limit_price: Decimal) -> Decimal:
    """Cash to hold for a limit buy: it never fills above its limit price."""
    return hold_amount(quantity, limit_price)


def order_shape_errors(
    *,
    order_type: str,
    quantity: Decimal,
    time_in_force: str,
    limit_price: Decimal | None,
) -> dict[str, list[str]]:
    """What makes these fields no order, by field (empty when they are one): a
    limit order needs a limit price and whole shares; a market order takes no
    limit price and lives for the day or is immediate-or-cancel; the quantity and
    the limit price are within money.MAX_QUANTITY and money.MAX_PRICE (so the
    hold fits its columns). The one place these rules live: placement enforces
    them, the API reports them per field."""
    errors: dict[str, list[str]] = {}
    if quantity > MAX_QUANTITY:
        errors["quantity"] = [f"at most {MAX_QUANTITY}"]
    if limit_price is not None and limit_price > MAX_PRICE:
        errors["limit_price"] = [f"at most {MAX_PRICE}"]
    if order_type == Trade.Type.LIMIT:
        if limit_price is None:
            errors["limit_price"] = ["required for limit orders"]
        if quantity != quantity.to_integral_value():
            errors.setdefault("quantity", []).append(
                "fractional quantities are allowed for market orders only"
            )
    else:
        if limit_price is not None:
            errors["limit_price"] = ["only limit orders take a limit price"]
        if time_in_force == Trade.TimeInForce.GTC:
            errors["time_in_force"] = ["market orders are day or ioc"]
    return errors


def trade_place(
    *,
    customer: Customer,
    symbol: str,
    side: str,
    quantity: Decimal,
    order_type: str,
    price_source: PriceSource,
    time_in_force: str = Trade.TimeInForce.DAY,
    limit_price: Decimal | None = None,
    client_order_id: str | None = None,
    origin: dict[str, str] | None = None,
) -> Trade:
    """Accept a trade: lock the account row, check buying power (buy) or free shares
    (sell), then insert the trade, its hold, the hold's ledger entries and the
    ``trade.placed`` outbox event, all in one transaction. ``origin`` (the API
    request, broker.api.origin) is kept on the acceptance line for the timeline.

    The quote is fetched before the transaction: no network call holds the lock.
    Raises InvalidOrder (``order_shape_errors``), UnknownSymbol, PriceOutOfRange
    (the last price is above money.MAX_PRICE), DuplicateClientOrderId,
    InsufficientBuyingPower or InsufficientShares, having written nothing.
    """
    errors = order_shape_errors(
        order_type=order_type,
        quantity=quantity,
        time_in_force=time_in_force,
        limit_price=limit_price,
    )
    if errors:
        raise InvalidOrder(errors)
    last_price = price_source(symbol)
    if last_price is None:
        raise UnknownSymbol(f"{symbol} is not traded on the exchange", field="symbol")
    if last_price > MAX_PRICE:
        # The exchange is distrusted: a market buy's hold against this price
        # might not fit its columns, and a fill near it not fit a ledger entry.
        raise PriceOutOfRange(
            f"{symbol} trades at {last_price}, above the highest price accepted "
            f"({MAX_PRICE})",
            field="symbol",
        )

    with transaction.atomic():
        account = Account.objects.select_for_update().get(customer=customer)
        if (
            client_order_id is not None
            and Trade.objects.filter(
                account=account, client_order_id=client_order_id
            ).exists()
        ):
            raise DuplicateClientOrderId(
                f"client_order_id {client_order_id!r} was used by another trade",
                field="client_order_id",
            )
        if side == Trade.Side.BUY:
            if order_type == Trade.Type.LIMIT:
                collar_price = None
                hold = limit_buy_hold(quantity=quantity, limit_price=limit_price)
            else:
                collar_price, hold = market_buy_hold(
                    quantity=quantity,
                    last_price=last_price,
                    collar=settings.BUY_COLLAR,
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
            time_in_force=time_in_force,
            quantity=quantity,
            limit_price=limit_price,
            client_order_id=client_order_id,
            collar_price=collar_price,
            hold_remaining=hold,
        )
        TradeEvent.objects.create(
            trade=trade,
            kind=TradeEvent.Kind.STATUS,
            status=Trade.Status.ACCEPTED,
            detail={
                "hold": str(hold),
                "last_price": str(last_price),
                **({"origin": origin} if origin else {}),
            },
        )
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.HOLD,
            postings=hold_postings,
            trade=trade,
        )
        outbox_enqueue_for_trade(
            trade=trade, customer_id=customer.pk, event_type=EventType.TRADE_PLACED
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
