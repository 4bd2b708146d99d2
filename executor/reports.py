"""Booking what the exchange says on the FIX session (docs/FIX.md, "Application
messages", "Reconciliation"): execution reports, cancel rejects, and rejects of
our own messages. Runs inside the session's fenced transaction that also moves
the expected incoming sequence number, so a report is booked exactly when its
number is consumed: a replay (a resend after failover, a duplicate) finds its
ExecID booked and its status reached, and changes nothing.

Every report passes the trust checks (executor/trust.py) first; one that fails is
quarantined: nothing booked, the hold kept, the trade flagged for review.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from broker.models import FixJournal, QuarantinedMessage, Trade, TradeEvent
from broker.observability.metrics import FIX_QUARANTINED
from broker.services.settlement import Settlement, VenueFill, VenueOrder
from broker.services.transitions import TERMINAL, is_reconcilable
from executor.fix.codec import Message, MsgType, Tag
from executor.fix.session import Outgoing
from executor.orders import new_order_single, order_status_request
from executor.trust import (
    UNKNOWN_ORDER,
    VENUE_STATUS,
    ExecType,
    ExecutionReport,
    Malformed,
    report_problem,
)

logger = logging.getLogger(__name__)

Status = Trade.Status
# CxlRejReason(102).
TOO_LATE_TO_CANCEL = "0"
UNKNOWN_ORDER_TO_CANCEL = "1"
# BusinessRejectReason(380): 0 other (e.g. the venue failed on it), 4 the venue's
# application is not available now — the order may or may not exist.
UNCERTAIN_BUSINESS_REJECTS = frozenset({"0", "4"})
# OrdRejReason(103) 6: duplicate order (the request refused, not the order).
DUPLICATE_ORDER = "6"
# SessionRejectReason(373) 6 (incorrect data format) for a report we cannot read.
INCORRECT_DATA_FORMAT = "6"


class ReportBooking:
    """The ``on_app`` of a led topic's FIX session. Returns the messages to send
    once the booking has committed (reconciliation follow-ups, Rejects)."""

    def __init__(
        self,
        *,
        topic: str,
        session: str,
        epoch: int,
        on_ack: Callable[[str], None] = lambda cl_ord_id: None,
    ) -> None:
        self.topic = topic
        self.session = session
        self.epoch = epoch
        self._on_ack = on_ack
        self._settlement = Settlement(epoch=epoch)  # each batch gets its own

    def __call__(self, messages: list[Message]) -> list[Outgoing]:
        follow_ups: list[Outgoing] = []
        # The whole batch is booked in memory, then written in one statement
        # per kind of row (broker/services/settlement.py).
        self._settlement = Settlement(epoch=self.epoch)
        parsed: list[tuple[Message, ExecutionReport | None]] = []
        for message in messages:
            report = None
            if message.msg_type == MsgType.EXECUTION_REPORT:
                try:
                    report = ExecutionReport.parse(message)
                except Malformed as exc:
                    self._quarantine(message, None, f"malformed: {exc}")
                    follow_ups.append(_reject(message, str(exc)))
                    continue
            parsed.append((message, report))
        trades = self._trades(parsed)
        for message, report in parsed:
            if report is not None:
                self._report(message, report, trades, follow_ups)
            elif message.msg_type == MsgType.ORDER_CANCEL_REJECT:
                self._cancel_reject(message, trades, follow_ups)
            elif message.msg_type in (MsgType.REJECT, MsgType.BUSINESS_MESSAGE_REJECT):
                self._rejected(message, follow_ups)
            else:
                logger.warning(
                    "fix message type %s passed over session=%s seq=%s",
                    message.msg_type,
                    self.session,
                    message.seq,
                )
        self._settlement.flush()
        return follow_ups

    def _trades(
        self, parsed: list[tuple[Message, ExecutionReport | None]]
    ) -> dict[str, uuid.UUID]:
        """ClOrdID → trade id, for the ClOrdIDs that are trades; those trades
        and their accounts are locked and read at once (the settlement's)."""
        refs = set()
        for message, report in parsed:
            if report is not None:
                refs.add(report.trade_ref)
            elif message.msg_type == MsgType.ORDER_CANCEL_REJECT:
                refs.add(message.get(Tag.ORIG_CL_ORD_ID) or "")
        found = {}
        for ref in refs:
            trade_id = _trade_id(ref)
            if trade_id is not None:
                found[ref] = trade_id
        loaded = self._settlement.load(found.values())
        return {ref: tid for ref, tid in found.items() if tid in loaded}

    # -- execution reports ------------------------------------------------------

    def _report(
        self,
        message: Message,
        report: ExecutionReport,
        trades: dict[str, uuid.UUID],
        follow_ups: list[Outgoing],
    ) -> None:
        self._on_ack(report.trade_ref)
        trade_id = trades.get(report.trade_ref)
        if trade_id is None:
            self._quarantine(
                message, None, f"ClOrdID {report.trade_ref[:64]!r} is no trade"
            )
            return
        # As the reports before it in the batch left it.
        trade = self._settlement.trade(trade_id)
        if report.exec_type == ExecType.TRADE and (
            self._settlement.has_fill(trade_id, report.exec_id)
        ):
            return  # a duplicate of a booked fill
        if report.exec_type == ExecType.ORDER_STATUS:
            self._order_status(message, report, trade, follow_ups)
            return
        if report.exec_type == ExecType.REJECTED and (
            report.ord_rej_reason == DUPLICATE_ORDER
        ):
            # The venue refused our request, not the order: it holds an order
            # with this ClOrdID that is not this one (another session's, other
            # parameters). Nothing to book on that word.
            self._quarantine(
                message, trade, f"the venue refused a duplicate ClOrdID: {report.text}"
            )
            return
        problem = report_problem(
            trade=trade, report=report, topic=self.topic, booked=trade.filled_quantity
        )
        if problem:
            self._quarantine(message, trade, problem)
            return
        order = self._venue_order(report)
        if order is None:
            logger.info(
                "fix report passed over trade=%s exec_type=%s ord_status=%s",
                trade.id,
                report.exec_type,
                report.ord_status,
            )
        elif trade.status not in TERMINAL or order.executions:
            self._settlement.apply(trade.id, order)
        self._event(trade.id, message, report)

    def _venue_order(self, report: ExecutionReport) -> VenueOrder | None:
        status = VENUE_STATUS.get(report.ord_status)
        if status is None:
            return None  # pending cancel, restated, ...: nothing to book
        fills: tuple[VenueFill, ...] = ()
        if report.exec_type == ExecType.TRADE:
            assert report.last_qty is not None and report.last_px is not None
            fills = (
                VenueFill(
                    exec_id=report.exec_id,
                    quantity=report.last_qty,
                    price=report.last_px,
                    executed_at=report.transact_time or datetime.now(UTC),
                ),
            )
        reason = report.text or (
            f"OrdRejReason {report.ord_rej_reason}" if report.ord_rej_reason else ""
        )
        return VenueOrder(
            order_id=report.order_id[:64],
            status=status,
            reject_reason=reason if status == "rejected" else "",
            executions=fills,
        )

    def _order_status(
        self,
        message: Message,
        report: ExecutionReport,
        trade: Trade,
        follow_ups: list[Outgoing],
    ) -> None:
        """The answer to our OrderStatusRequest: the venue's aggregate state is
        applied only when it agrees with the fills booked; money never moves on
        an aggregate (missing fills are quarantined for operations)."""
        self._event(trade.id, message, report)
        if report.ord_status == "8" and report.ord_rej_reason == UNKNOWN_ORDER:
            self._unknown_at_venue(trade, follow_ups)
            return
        problem = report_problem(
            trade=trade, report=report, topic=self.topic, booked=trade.filled_quantity
        )
        if problem is None and report.cum_qty is not None:
            if report.cum_qty > trade.filled_quantity:
                problem = (
                    f"the venue reports {report.cum_qty} filled, "
                    f"{trade.filled_quantity} booked: fills the session did not "
                    "deliver"
                )
            elif report.cum_qty < trade.filled_quantity:
                problem = (
                    f"the venue reports {report.cum_qty} filled, less than the "
                    f"{trade.filled_quantity} booked"
                )
        if problem:
            self._quarantine(message, trade, problem)
            return
        order = self._venue_order(report)
        if order is not None and trade.status not in TERMINAL:
            self._settlement.apply(trade.id, order)

    def _unknown_at_venue(self, trade: Trade, follow_ups: list[Outgoing]) -> None:
        """The venue never took the order: a pending cancel has nothing left to
        cancel; any other open trade's order is sent again (PossResend: the
        venue deduplicates by ClOrdID should it have it after all)."""
        if trade.status == Status.PENDING_CANCEL:
            self._settlement.finish_unsent(trade.id, Status.CANCELED)
        elif is_reconcilable(trade):
            follow_ups.append(new_order_single(trade, poss_resend=True))

    # -- cancel rejects and rejects of our messages -------------------------------

    def _cancel_reject(
        self, message: Message, trades: dict[str, uuid.UUID], follow_ups: list
    ) -> None:
        reason = message.get(Tag.CXL_REJ_REASON) or ""
        trade_id = trades.get(message.get(Tag.ORIG_CL_ORD_ID) or "")
        if trade_id is None:
            self._quarantine(message, None, "OrderCancelReject for no trade")
            return
        trade = self._settlement.trade(trade_id)
        self._event(trade.id, message, None)
        if reason == UNKNOWN_ORDER_TO_CANCEL and trade.status not in TERMINAL:
            # "Unknown order" also answers an order held under another session:
            # never booked canceled on this word; the venue is asked instead.
            follow_ups.append(order_status_request(trade))
        elif reason != TOO_LATE_TO_CANCEL:
            logger.warning(
                "cancel rejected trade=%s reason=%s text=%s",
                trade.id,
                reason,
                message.get(Tag.TEXT),
            )

    def _rejected(self, message: Message, follow_ups: list[Outgoing]) -> None:
        """A Reject (3) or BusinessMessageReject (j) of one of our messages."""
        ref_seq = message.get(Tag.REF_SEQ_NUM) or ""
        sent = (
            FixJournal.objects.filter(session=self.session, seq=int(ref_seq)).first()
            if ref_seq.isdigit()
            else None
        )
        text = message.get(Tag.TEXT) or ""
        reason = (
            message.get(Tag.BUSINESS_REJECT_REASON)
            or message.get(Tag.SESSION_REJECT_REASON)
            or ""
        )
        logger.warning(
            "exchange rejected our message session=%s ref_seq=%s type=%s "
            "reason=%s text=%s",
            self.session,
            ref_seq,
            sent.msg_type if sent else "?",
            reason,
            text,
        )
        trade = None
        if sent is not None and sent.trade_id is not None:
            trade = self._settlement.trade(sent.trade_id)
        if sent is None or trade is None:
            return
        if sent.msg_type == MsgType.ORDER_STATUS_REQUEST:
            # The venue does not answer status requests: send the order again,
            # which it deduplicates by ClOrdID; its answer settles the trade.
            if is_reconcilable(trade):
                follow_ups.append(new_order_single(trade, poss_resend=True))
        elif sent.msg_type == MsgType.NEW_ORDER_SINGLE and (
            message.msg_type == MsgType.REJECT
            or reason not in UNCERTAIN_BUSINESS_REJECTS
        ):
            # Not processed, and resending the same message will not change
            # that: the venue does not have the order.
            self._settlement.finish_unsent(
                trade.id,
                Status.REJECTED,
                f"exchange rejected the order: {text or reason}"[:200],
            )
        # A cancel, or an order the venue failed on or refused for now, is left
        # to reconciliation: the stuck-trade job asks again.

    def poisoned(self, message: Message, reason: str) -> None:
        """``on_poison``: a message that failed to book every time is quarantined
        like a report failing the trust checks (its trade flagged)."""
        self._settlement = Settlement(epoch=self.epoch)
        trade = None
        if message.msg_type == MsgType.EXECUTION_REPORT:
            ref = message.get(Tag.ORIG_CL_ORD_ID) or message.get(Tag.CL_ORD_ID) or ""
            trade_id = _trade_id(ref)
            if trade_id is not None:
                trade = self._settlement.trade(trade_id)
        self._quarantine(message, trade, reason)
        self._settlement.flush()

    # -- records ----------------------------------------------------------------

    def _event(
        self, trade_id: uuid.UUID, message: Message, report: ExecutionReport | None
    ) -> None:
        detail = {"session": self.session, "seq": message.seq, "type": message.msg_type}
        if report is not None:
            detail.update(exec_type=report.exec_type, ord_status=report.ord_status)
            if report.exec_id:
                detail["exec_id"] = report.exec_id
        self._settlement.record(
            TradeEvent(
                trade_id=trade_id,
                kind=TradeEvent.Kind.REPORT,
                epoch=self.epoch,
                detail=detail,
            )
        )

    def _quarantine(self, message: Message, trade: Trade | None, reason: str) -> None:
        FIX_QUARANTINED.labels(self.topic).inc()
        logger.error(
            "fix message quarantined session=%s seq=%s trade=%s reason=%s",
            self.session,
            message.seq,
            trade.id if trade else None,
            reason,
        )
        QuarantinedMessage.objects.create(
            session=self.session,
            seq=message.seq,
            msg_type=message.msg_type[:8],
            trade=trade,
            reason=reason[:500],
            raw=message.text()[:20000],
            epoch=self.epoch,
        )
        if trade is not None:
            self._settlement.flag(
                trade,
                reason,
                {"session": self.session, "seq": message.seq, "reason": reason},
            )


def _trade_id(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def _reject(message: Message, text: str) -> Outgoing:
    """A session-level Reject of a report we could not read (sent after the
    booking commits)."""
    return Outgoing(
        MsgType.REJECT,
        [
            (Tag.REF_SEQ_NUM, message.seq or 0),
            (Tag.REF_MSG_TYPE, message.msg_type),
            (Tag.SESSION_REJECT_REASON, INCORRECT_DATA_FORMAT),
            (Tag.TEXT, text[:200]),
        ],
    )
