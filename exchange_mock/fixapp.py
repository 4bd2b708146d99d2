"""The FIX application layer: NewOrderSingle, OrderCancelRequest and
OrderStatusRequest into the matching engine; the engine's reports into
ExecutionReports.

Orders belong to the session (SenderCompID) that sent them. Answers:

- NewOrderSingle (D), ClOrdID new: the engine accepts it; its reports (new,
  fills, canceled...) reach the session through its report feed as
  ExecutionReports, like every later change of the order.
- D refused before acceptance (a value this venue does not support, a rule of
  the venue, an unknown symbol): ExecutionReport 150=8/39=8, OrderID ``NONE``,
  OrdRejReason(103) and Text — nothing is stored, a resend is refused again.
- D whose ClOrdID the session already used with the same parameters (a resend,
  PossResend=Y or not): no second order; an ExecutionReport 150=I of the order
  as it is now, sent after every report of that state (so its CumQty never
  counts a fill the session has not been sent).
- D whose ClOrdID is taken with other parameters, or by another session:
  ExecutionReport 150=8/39=8 with OrdRejReason 6 (duplicate order) and OrderID
  ``NONE``: it refuses the new request and says nothing of the existing order.
- OrderCancelRequest (F): an open order is canceled and its ExecutionReport
  150=4 carries the cancel's ClOrdID and OrigClOrdID = the order's. A terminal
  order: OrderCancelReject (9) CxlRejReason 0 (too late) with its OrdStatus; an
  unknown order or one of another session: 9 with CxlRejReason 1.
- OrderStatusRequest (H): ExecutionReport 150=I of the order, or 39=8 with
  OrdRejReason 5 (unknown order).
- Any other application MsgType: BusinessMessageReject (j) reason 3.

Every ExecutionReport carries the order's Symbol, Side and OrderQty.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from exchange_mock.engine import (
    DuplicateOrderConflict,
    Exchange,
    UnknownOrderError,
    UnknownSymbolError,
)
from exchange_mock.fixcodec import Message, utc_timestamp
from exchange_mock.matching import (
    REPORT_CANCELED,
    REPORT_EXPIRED,
    REPORT_FILL,
    REPORT_NEW,
    REPORT_REJECTED,
)
from exchange_mock.orders import (
    BUY,
    CANCELED,
    CLIENT_ORDER_ID_RE,
    DAY,
    EXPIRED,
    FILLED,
    GTC,
    IOC,
    LIMIT,
    MARKET,
    MARKET_CLOSED,
    NEW,
    PARTIALLY_FILLED,
    PRICE_OUTSIDE_COLLAR,
    REJECTED,
    SELL,
    Order,
    OrderRequest,
    OrderValidationError,
    format_decimal,
    format_price,
    parse_order_request,
)
from exchange_mock.sessions import Fence
from exchange_mock.wire import utcnow

EXECUTION_REPORT = "8"
ORDER_CANCEL_REJECT = "9"
BUSINESS_MESSAGE_REJECT = "j"
APPLICATION_TYPES = frozenset({"D", "F", "H"})

NO_ORDER_ID = "NONE"
SIDES = {"1": BUY, "2": SELL}
SIDE_CODES = {BUY: "1", SELL: "2"}
ORDER_TYPES = {"1": MARKET, "2": LIMIT}
ORDER_TYPE_CODES = {MARKET: "1", LIMIT: "2"}
TIMES_IN_FORCE = {"0": DAY, "1": GTC, "3": IOC}
TIME_IN_FORCE_CODES = {DAY: "0", GTC: "1", IOC: "3"}
ORD_STATUS = {
    NEW: "0",
    PARTIALLY_FILLED: "1",
    FILLED: "2",
    CANCELED: "4",
    EXPIRED: "C",
    REJECTED: "8",
}
EXEC_TYPES = {
    REPORT_NEW: "0",
    REPORT_FILL: "F",
    REPORT_CANCELED: "4",
    REPORT_EXPIRED: "C",
    REPORT_REJECTED: "8",
}
EXEC_TYPE_STATUS = "I"

# OrdRejReason(103)
REJECT_UNKNOWN_SYMBOL = "1"
REJECT_EXCHANGE_CLOSED = "2"
REJECT_UNKNOWN_ORDER = "5"
REJECT_DUPLICATE_ORDER = "6"
REJECT_UNSUPPORTED = "11"
REJECT_INCORRECT_QUANTITY = "13"
REJECT_OTHER = "99"
ENGINE_REJECT_REASONS = {
    MARKET_CLOSED: REJECT_EXCHANGE_CLOSED,
    PRICE_OUTSIDE_COLLAR: REJECT_OTHER,
}
# CxlRejReason(102)
CANCEL_TOO_LATE = "0"
CANCEL_UNKNOWN_ORDER = "1"
CANCEL_OTHER = "99"
# BusinessRejectReason(380)
UNSUPPORTED_MESSAGE_TYPE = "3"

Fields = list[tuple[int, object]]


class Link(Protocol):
    """What the application needs of the session it serves (the caller holds
    the session's lock)."""

    session_id: str

    @property
    def fence(self) -> Fence: ...

    def send(self, msg_type: str, fields: Fields) -> None:
        """Journal and send one message."""

    def drain_feed(self, upto: int | None = None) -> None:
        """Send the session's feed reports not sent yet (up to feed seq
        ``upto``)."""


class OrderRefused(Exception):
    """A D refused before acceptance: OrdRejReason and Text."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


class FixApplication:
    """Application messages into engine calls. Stateless apart from the engine:
    every answer derives from stored orders and the request."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange

    def handle(self, link: Link, message: Message) -> None:
        """Process one application message of ``link``'s session (already
        accepted by the session layer). Raises the engine's StaleEpoch if the
        session's epoch has been superseded: nothing was done then."""
        msg_type = message.msg_type
        if msg_type == "D":
            self._new_order(link, message)
        elif msg_type == "F":
            self._cancel(link, message)
        elif msg_type == "H":
            self._status(link, message.get(11) or "", message)
        else:
            link.send(
                BUSINESS_MESSAGE_REJECT,
                [
                    (45, message.seq_num),
                    (372, msg_type),
                    (380, UNSUPPORTED_MESSAGE_TYPE),
                    (58, f"unsupported message type {msg_type}"),
                ],
            )

    def _new_order(self, link: Link, message: Message) -> None:
        try:
            request = order_request(message)
            result = self.exchange.submit(request, link.fence)
        except OrderRefused as refused:
            link.send(EXECUTION_REPORT, rejected_order(message, refused))
            return
        except UnknownSymbolError as exc:
            refused = OrderRefused(REJECT_UNKNOWN_SYMBOL, f"unknown symbol {exc}")
            link.send(EXECUTION_REPORT, rejected_order(message, refused))
            return
        except DuplicateOrderConflict as conflict:
            text = (
                "duplicate order: ClOrdID already used with other parameters"
                if conflict.same_session
                else "duplicate order: ClOrdID taken by another session"
            )
            refused = OrderRefused(REJECT_DUPLICATE_ORDER, text)
            link.send(EXECUTION_REPORT, rejected_order(message, refused))
            return
        if result.created:
            return  # its reports come from the feed
        self._status(link, request.client_order_id, message)

    def _cancel(self, link: Link, message: Message) -> None:
        cancel_id = message.get(11) or ""
        original = message.get(41) or ""
        if not CLIENT_ORDER_ID_RE.fullmatch(cancel_id):
            link.send(
                ORDER_CANCEL_REJECT,
                cancel_reject(
                    cancel_id,
                    original,
                    None,
                    CANCEL_OTHER,
                    "ClOrdID must be 1 to 64 characters from A-Z a-z 0-9 . _ : -",
                ),
            )
            return
        try:
            order, canceled = self.exchange.cancel_request(
                original, link.fence, cancel_id=cancel_id
            )
        except UnknownOrderError:
            link.send(
                ORDER_CANCEL_REJECT,
                cancel_reject(
                    cancel_id, original, None, CANCEL_UNKNOWN_ORDER, "unknown order"
                ),
            )
            return
        if canceled:
            return  # the canceled report comes from the feed
        link.send(
            ORDER_CANCEL_REJECT,
            cancel_reject(
                cancel_id,
                original,
                order,
                CANCEL_TOO_LATE,
                f"too late to cancel: the order is {order.status}",
            ),
        )

    def _status(self, link: Link, client_order_id: str, message: Message) -> None:
        order, upto = self.exchange.order_snapshot(client_order_id, link.session_id)
        if order is None:
            link.send(EXECUTION_REPORT, unknown_order_status(message))
            return
        # Every report of this state first: the status never runs ahead of them.
        link.drain_feed(upto)
        link.send(EXECUTION_REPORT, order_status(order))


def order_request(message: Message) -> OrderRequest:
    """The engine's OrderRequest for a D (session rules already checked).
    Raises :class:`OrderRefused`."""
    side = SIDES.get(message.get(54) or "")
    order_type = ORDER_TYPES.get(message.get(40) or "")
    raw_tif = message.get(59)
    time_in_force = DAY if raw_tif is None else TIMES_IN_FORCE.get(raw_tif)
    if side is None:
        raise OrderRefused(REJECT_UNSUPPORTED, "Side must be 1 (buy) or 2 (sell)")
    if order_type is None:
        raise OrderRefused(
            REJECT_UNSUPPORTED, "OrdType must be 1 (market) or 2 (limit)"
        )
    if time_in_force is None:
        raise OrderRefused(
            REJECT_UNSUPPORTED, "TimeInForce must be 0 (day), 1 (GTC) or 3 (IOC)"
        )
    body = {
        "client_order_id": message.get(11),
        "symbol": message.get(55),
        "side": side,
        "quantity": message.get(38),
        "type": order_type,
        "time_in_force": time_in_force,
        "limit_price": message.get(44),
    }
    try:
        return parse_order_request(body)
    except OrderValidationError as exc:
        names = {"quantity": "OrderQty", "limit_price": "Price"}
        text = "; ".join(
            f"{names.get(field, field)}: {', '.join(messages)}"
            for field, messages in exc.errors.items()
        )
        only_quantity = set(exc.errors) == {"quantity"}
        reason = REJECT_INCORRECT_QUANTITY if only_quantity else REJECT_OTHER
        raise OrderRefused(reason, text) from exc


# --- the messages ---


def report_fields(
    report: Mapping[str, Any], fill_shift: Decimal | None = None
) -> tuple[Fields, bool]:
    """The ExecutionReport of one feed report, and whether its LastPx was moved
    ``fill_shift`` beyond the limit (the fill_outside_limit fault; only a limit
    order's fill)."""
    order = report["order"]
    kind = report["type"]
    execution = report.get("execution")
    cancel_id = report.get("cancel_client_order_id")
    if kind == REPORT_FILL and execution is not None:
        exec_id = execution["exec_id"]
    else:
        exec_id = f"{order['order_id']}-{kind}"
    fields: Fields = [(37, order["order_id"])]
    if cancel_id is not None:
        fields += [(11, cancel_id), (41, order["client_order_id"])]
    else:
        fields.append((11, order["client_order_id"]))
    fields += [
        (17, exec_id),
        (150, EXEC_TYPES[kind]),
        (39, ORD_STATUS[order["status"]]),
        *_order_terms(
            order["symbol"],
            order["side"],
            order["quantity"],
            order["type"],
            order["limit_price"],
            order["time_in_force"],
        ),
    ]
    shifted = False
    average = order["average_price"] or "0"
    if kind == REPORT_FILL and execution is not None:
        price = execution["price"]
        if fill_shift is not None and order["type"] == LIMIT:
            price, average = _shifted(order, execution, fill_shift)
            shifted = True
        fields += [(32, execution["quantity"]), (31, price)]
    fields += [
        (14, order["filled_quantity"]),
        (151, order["leaves_quantity"]),
        (6, average),
    ]
    if kind == REPORT_REJECTED:
        reason = order.get("reject_reason") or "rejected"
        fields += [(103, ENGINE_REJECT_REASONS.get(reason, REJECT_OTHER)), (58, reason)]
    moment = execution["timestamp"] if execution is not None else report["timestamp"]
    fields.append((60, _fix_time(moment)))
    return fields, shifted


def _shifted(
    order: Mapping[str, Any], execution: Mapping[str, Any], shift: Decimal
) -> tuple[str, str]:
    """LastPx ``shift`` beyond the limit, and the AvgPx that price implies."""
    limit = Decimal(order["limit_price"])
    price = limit + shift if order["side"] == BUY else limit - shift
    notional = price * Decimal(execution["quantity"]) + sum(
        (
            Decimal(e["quantity"]) * Decimal(e["price"])
            for e in order["executions"]
            if e["exec_id"] != execution["exec_id"]
        ),
        Decimal(0),
    )
    average = notional / Decimal(order["filled_quantity"])
    return format_price(price), format_price(average)


def order_status(order: Order) -> Fields:
    """ExecutionReport 150=I: the order as it is now."""
    average = order.average_price
    fields: Fields = [
        (37, order.order_id),
        (11, order.client_order_id),
        (17, f"{order.order_id}-status-{_unique()}"),
        (150, EXEC_TYPE_STATUS),
        (39, ORD_STATUS[order.status]),
        *_order_terms(
            order.symbol,
            order.side,
            format_decimal(order.quantity),
            order.type,
            None if order.limit_price is None else format_price(order.limit_price),
            order.time_in_force,
        ),
        (14, format_decimal(order.filled_quantity)),
        (151, format_decimal(order.leaves_quantity)),
        (6, "0" if average is None else format_price(average)),
    ]
    if order.status == REJECTED:
        reason = order.reject_reason or "rejected"
        fields += [(103, ENGINE_REJECT_REASONS.get(reason, REJECT_OTHER)), (58, reason)]
    fields.append((60, utc_timestamp(order.updated_at or order.created_at)))
    return fields


def unknown_order_status(message: Message) -> Fields:
    """ExecutionReport 150=I, 39=8, OrdRejReason 5: no such order here."""
    return [
        (37, NO_ORDER_ID),
        (11, message.get(11)),
        (17, f"{NO_ORDER_ID}-status-{_unique()}"),
        (150, EXEC_TYPE_STATUS),
        (39, ORD_STATUS[REJECTED]),
        (55, message.get(55)),
        (54, message.get(54)),
        (14, "0"),
        (151, "0"),
        (6, "0"),
        (103, REJECT_UNKNOWN_ORDER),
        (58, "unknown order"),
        (60, utc_timestamp(utcnow())),
    ]


def rejected_order(message: Message, refused: OrderRefused) -> Fields:
    """ExecutionReport 150=8 for a D refused before acceptance (OrderID NONE:
    no order exists, or the one that does is not this request's)."""
    return [
        (37, NO_ORDER_ID),
        (11, message.get(11)),
        (17, f"{NO_ORDER_ID}-rejected-{_unique()}"),
        (150, EXEC_TYPES[REPORT_REJECTED]),
        (39, ORD_STATUS[REJECTED]),
        (55, message.get(55)),
        (54, message.get(54)),
        (38, message.get(38)),
        (40, message.get(40)),
        (44, message.get(44)),
        (59, message.get(59)),
        (14, "0"),
        (151, "0"),
        (6, "0"),
        (103, refused.reason),
        (58, refused.text),
        (60, utc_timestamp(utcnow())),
    ]


def cancel_reject(
    cancel_id: str, original: str, order: Order | None, reason: str, text: str
) -> Fields:
    """OrderCancelReject (9) answering an OrderCancelRequest."""
    return [
        (37, NO_ORDER_ID if order is None else order.order_id),
        (11, cancel_id),
        (41, original),
        (39, ORD_STATUS[REJECTED if order is None else order.status]),
        (434, "1"),  # CxlRejResponseTo: an OrderCancelRequest
        (102, reason),
        (58, text),
        (60, utc_timestamp(utcnow())),
    ]


def _order_terms(
    symbol: str,
    side: str,
    quantity: str,
    order_type: str,
    limit_price: str | None,
    time_in_force: str,
) -> Fields:
    fields: Fields = [
        (55, symbol),
        (54, SIDE_CODES[side]),
        (38, quantity),
        (40, ORDER_TYPE_CODES[order_type]),
    ]
    if limit_price is not None:
        fields.append((44, limit_price))
    fields.append((59, TIME_IN_FORCE_CODES[time_in_force]))
    return fields


def _fix_time(iso: str) -> str:
    """An ISO-8601 time of the order JSON as a UTCTimestamp."""
    return utc_timestamp(datetime.fromisoformat(iso))


def _unique() -> str:
    return uuid.uuid4().hex[:12]
