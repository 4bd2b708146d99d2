"""The messages a leader sends about a trade (docs/FIX.md, "Application
messages"): NewOrderSingle, OrderCancelRequest, OrderStatusRequest."""

from __future__ import annotations

from broker.models import Trade
from executor.fix.codec import MsgType, Tag, utc_timestamp
from executor.fix.session import Outgoing

_SIDE = {Trade.Side.BUY: "1", Trade.Side.SELL: "2"}
_TIME_IN_FORCE = {
    Trade.TimeInForce.DAY: "0",
    Trade.TimeInForce.GTC: "1",
    Trade.TimeInForce.IOC: "3",
}
MARKET, LIMIT = "1", "2"


def cancel_cl_ord_id(trade: Trade) -> str:
    """The cancel's own ClOrdID: deterministic, so asking twice is one request."""
    return f"{trade.id}:C"


def new_order_single(trade: Trade, *, poss_resend: bool = False) -> Outgoing:
    """ClOrdID = the trade id (the venue's deduplication key). A market buy goes
    as a limit order at its collar price: no venue can fill it above the price
    its hold was computed at."""
    if trade.type == Trade.Type.LIMIT:
        ord_type, price = LIMIT, trade.limit_price
    elif trade.side == Trade.Side.BUY and trade.collar_price is not None:
        ord_type, price = LIMIT, trade.collar_price
    else:
        ord_type, price = MARKET, None
    body: list[tuple[int, object]] = [
        (Tag.CL_ORD_ID, trade.id),
        (Tag.HANDL_INST, "1"),
        (Tag.SYMBOL, trade.symbol),
        (Tag.SIDE, _SIDE[trade.side]),
        (Tag.TRANSACT_TIME, utc_timestamp()),
        (Tag.ORDER_QTY, _decimal(trade.quantity)),
        (Tag.ORD_TYPE, ord_type),
    ]
    if price is not None:
        body.append((Tag.PRICE, _decimal(price)))
    body.append((Tag.TIME_IN_FORCE, _TIME_IN_FORCE[trade.time_in_force]))
    if poss_resend:
        body.append((Tag.POSS_RESEND, "Y"))
    return Outgoing(MsgType.NEW_ORDER_SINGLE, body, trade.id)


def order_cancel_request(trade: Trade) -> Outgoing:
    return Outgoing(
        MsgType.ORDER_CANCEL_REQUEST,
        [
            (Tag.ORIG_CL_ORD_ID, trade.id),
            (Tag.CL_ORD_ID, cancel_cl_ord_id(trade)),
            (Tag.SYMBOL, trade.symbol),
            (Tag.SIDE, _SIDE[trade.side]),
            (Tag.TRANSACT_TIME, utc_timestamp()),
            (Tag.ORDER_QTY, _decimal(trade.quantity)),
        ],
        trade.id,
    )


def order_status_request(trade: Trade) -> Outgoing:
    return Outgoing(
        MsgType.ORDER_STATUS_REQUEST,
        [
            (Tag.CL_ORD_ID, trade.id),
            (Tag.SYMBOL, trade.symbol),
            (Tag.SIDE, _SIDE[trade.side]),
        ],
        trade.id,
    )


def _decimal(value) -> str:
    """A decimal without exponent or trailing zeros (FIX Qty/Price)."""
    return format(value.normalize(), "f")
