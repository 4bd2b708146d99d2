"""The trust boundary (DESIGN.md invariant 9, docs/FIX.md "The trust boundary"):
what an execution report must satisfy before it may move money. The exchange is
distrusted: a report naming another topic's trade, another symbol or side, an
impossible quantity or a price outside the order's limit or collar is not booked
but quarantined for operations."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from broker.models import Trade
from broker.money import COLUMN_DIGITS, PRICE_PLACES, QUANTITY_PLACES
from broker.services.transitions import TERMINAL
from broker.topics import topic_for_customer
from executor.fix.codec import Message, Tag, parse_timestamp

SIDES = {"1": Trade.Side.BUY, "2": Trade.Side.SELL}


class ExecType:
    NEW = "0"
    CANCELED = "4"
    REJECTED = "8"
    EXPIRED = "C"
    TRADE = "F"
    ORDER_STATUS = "I"


class OrdStatus:
    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    CANCELED = "4"
    PENDING_CANCEL = "6"
    REJECTED = "8"
    EXPIRED = "C"


# OrdStatus(39) → the exchange order status the settlement service books.
VENUE_STATUS = {
    OrdStatus.NEW: "new",
    OrdStatus.PARTIALLY_FILLED: "partially_filled",
    OrdStatus.FILLED: "filled",
    OrdStatus.CANCELED: "canceled",
    OrdStatus.EXPIRED: "expired",
    OrdStatus.REJECTED: "rejected",
}
# OrdRejReason(103) 5: the venue does not know the order.
UNKNOWN_ORDER = "5"


class Malformed(ValueError):
    """A field of the report cannot be read at all."""


@dataclass(frozen=True)
class ExecutionReport:
    """The fields of an ExecutionReport(8) this project reads, parsed."""

    seq: int
    exec_type: str
    ord_status: str
    cl_ord_id: str
    orig_cl_ord_id: str
    order_id: str
    exec_id: str
    symbol: str
    side: str  # buy | sell | "" when absent
    order_qty: Decimal | None
    last_qty: Decimal | None
    last_px: Decimal | None
    cum_qty: Decimal | None
    ord_rej_reason: str
    text: str
    transact_time: datetime | None
    poss_dup: bool

    @classmethod
    def parse(cls, message: Message) -> ExecutionReport:
        def required(tag: int, name: str) -> str:
            value = message.get(tag)
            if not value:
                raise Malformed(f"{name}({tag}) missing")
            return value

        side_raw = message.get(Tag.SIDE) or ""
        if side_raw and side_raw not in SIDES:
            raise Malformed(f"Side(54) {side_raw!r} is not buy or sell")
        transact = message.get(Tag.TRANSACT_TIME)
        try:
            transact_time = parse_timestamp(transact) if transact else None
        except ValueError as exc:
            raise Malformed(f"TransactTime(60) {transact!r}: {exc}") from exc
        return cls(
            seq=message.seq or 0,
            exec_type=required(Tag.EXEC_TYPE, "ExecType"),
            ord_status=required(Tag.ORD_STATUS, "OrdStatus"),
            cl_ord_id=required(Tag.CL_ORD_ID, "ClOrdID"),
            orig_cl_ord_id=message.get(Tag.ORIG_CL_ORD_ID) or "",
            order_id=message.get(Tag.ORDER_ID) or "",
            exec_id=message.get(Tag.EXEC_ID) or "",
            symbol=message.get(Tag.SYMBOL) or "",
            side=SIDES.get(side_raw, ""),
            order_qty=_decimal(message, Tag.ORDER_QTY, "OrderQty"),
            last_qty=_decimal(message, Tag.LAST_QTY, "LastQty"),
            last_px=_decimal(message, Tag.LAST_PX, "LastPx"),
            cum_qty=_decimal(message, Tag.CUM_QTY, "CumQty"),
            ord_rej_reason=message.get(Tag.ORD_REJ_REASON) or "",
            text=message.get(Tag.TEXT) or "",
            transact_time=transact_time,
            poss_dup=message.poss_dup,
        )

    @property
    def trade_ref(self) -> str:
        """The ClOrdID of the trade's own order: a cancel's report names the
        trade in OrigClOrdID."""
        return self.orig_cl_ord_id or self.cl_ord_id


def _decimal(message: Message, tag: int, name: str) -> Decimal | None:
    value = message.get(tag)
    if value is None or value == "":
        return None
    try:
        return Decimal(value)
    except InvalidOperation as exc:
        raise Malformed(f"{name}({tag}) {value[:40]!r} is not a number") from exc


def _plain(value: Decimal) -> str:
    """A quantity as people write it: 4, not 4.000000."""
    return format(value.normalize(), "f") if value.is_finite() else str(value)


def _fits(value: Decimal, places: int) -> bool:
    """Finite, at most ``places`` decimals, and within NUMERIC(20, places)."""
    if not value.is_finite():
        return False
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -places:
        return False
    return abs(value) < Decimal(10) ** (COLUMN_DIGITS - places)


def report_problem(
    *, trade: Trade, report: ExecutionReport, topic: str, booked: Decimal
) -> str | None:
    """Why ``report`` may not be booked on ``trade`` (``booked``: the quantity
    its fills booked so far), or None when it may."""
    if topic_for_customer(trade.account.customer_id) != topic:
        return f"trade {trade.id} belongs to another topic than {topic}"
    if report.symbol and report.symbol != trade.symbol:
        return f"symbol {report.symbol} is not the trade's {trade.symbol}"
    if report.side and report.side != trade.side:
        return f"side {report.side} is not the trade's {trade.side}"
    if report.order_qty is not None and report.order_qty != trade.quantity:
        return (
            f"OrderQty {report.order_qty} is not the trade's {_plain(trade.quantity)}"
        )
    cum = report.cum_qty
    if cum is not None and (not cum.is_finite() or cum < 0 or cum > trade.quantity):
        return f"CumQty {cum} outside 0..{_plain(trade.quantity)}"
    if report.exec_type == ExecType.TRADE:
        if trade.status in TERMINAL:
            return f"a fill for a trade already {trade.status}"
        return _fill_problem(trade, report, booked)
    if report.exec_type in (ExecType.CANCELED, ExecType.EXPIRED) and (
        cum is not None and cum != booked
    ):
        return f"CumQty {cum} on a final report, but {_plain(booked)} booked"
    return None


def _fill_problem(trade: Trade, report: ExecutionReport, booked: Decimal) -> str | None:
    qty, px = report.last_qty, report.last_px
    if not report.exec_id:
        return "a fill without ExecID(17)"
    if qty is None or not qty.is_finite() or qty <= 0:
        return f"LastQty {qty} is not a positive quantity"
    if px is None or not px.is_finite() or px <= 0:
        return f"LastPx {px} is not a positive price"
    if not _fits(qty, QUANTITY_PLACES):
        return f"LastQty {qty} does not fit the quantity columns"
    if not _fits(px, PRICE_PLACES):
        return f"LastPx {px} does not fit the price columns"
    if report.cum_qty is None or report.cum_qty != booked + qty:
        return f"CumQty {report.cum_qty} is not {_plain(booked)} booked + LastQty {qty}"
    if booked + qty > trade.quantity:
        return (
            f"fills of {_plain(booked + qty)} exceed the order's "
            f"{_plain(trade.quantity)}"
        )
    if trade.side == Trade.Side.BUY:
        ceiling = trade.limit_price or trade.collar_price
        if ceiling is not None and px > ceiling:
            what = "limit" if trade.limit_price else "collar"
            return f"LastPx {px} above the buy's {what} {ceiling}"
    elif trade.limit_price is not None and px < trade.limit_price:
        return f"LastPx {px} below the sell's limit {trade.limit_price}"
    return None
