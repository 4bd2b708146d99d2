"""From Kafka messages to FIX messages: what a leader does with each event of its
topic, pipelined (docs/FIX.md). Knows nothing of Kafka or sockets, so it is
unit-testable with a fake session.

trade.placed: accepted → submitted, and a NewOrderSingle journaled in the same
fenced transaction that moves the Kafka offset past the message; it goes on the
wire after the commit. The answers come back on the session and are booked there
(executor/reports.py): the leader does not wait for them, only keeps at most
``window`` orders unacknowledged.
trade.cancel_requested: an OrderCancelRequest (or, for a trade never sent, the
cancel is booked at once).
trade.reconcile_requested: an OrderStatusRequest.

Consecutive messages of a poll share one transaction. A replay after a crash is
harmless: the offset and the journal commit together, so a message whose order
was journaled is never seen again, and the venue deduplicates by ClOrdID anyway.
A message that cannot be understood, or whose handling fails every time, is
dead-lettered and the topic moves on.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from broker.events import Event, EventType, UndecodableEvent
from broker.models import Trade, TradeEvent
from broker.observability.metrics import FIX_IN_FLIGHT
from broker.services.settlement import (
    trade_finish_unsent,
    trade_mark_submitted,
    trades_mark_submitted,
)
from broker.services.transitions import TERMINAL, is_reconcilable
from executor.dead_letters import DeadLetterSink, dead_letter_record
from executor.fencing import Fence
from executor.fix import state
from executor.fix.codec import MsgType
from executor.fix.session import FixSession, Outbox
from executor.offsets import consumer_offset_advance
from executor.orders import new_order_single, order_cancel_request, order_status_request
from executor.retry import DEFAULT_RETRY, Poisoned, RetryPolicy, until_poisoned

logger = logging.getLogger(__name__)

Status = Trade.Status
HANDLED = "handled"
DEAD_LETTERED = "dead_lettered"
UNKNOWN_TRADE = "unknown trade"


# The trades of the run being handled, read in one query at its start (see
# _send_run); None outside a run. A context variable, so the planners keep the
# signature every planner has (and each leader thread has its own).
_RUN_TRADES: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "run_trades", default=None
)
# The run's placed trades moved accepted → submitted in one statement at its
# start, their orders not yet queued.
_RUN_SUBMITTED: contextvars.ContextVar[set | None] = contextvars.ContextVar(
    "run_submitted", default=None
)


@dataclass(frozen=True)
class MessagePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class _Work:
    raw: bytes | None
    position: MessagePosition
    event_type: str
    trade_id: uuid.UUID


class Window:
    """The orders sent and not yet acknowledged (any ExecutionReport about them).
    ``wait_for_room`` holds the leader while ``limit`` are in flight; an order
    unanswered for ``expire_seconds`` stops counting (the stuck-trade
    reconciliation takes it from there), so a venue that loses an order cannot
    stall the topic."""

    def __init__(self, *, topic: str, limit: int, expire_seconds: float = 30.0):
        self.topic = topic
        self.limit = limit
        self._expire = expire_seconds
        self._sent: dict[str, float] = {}
        self._changed = threading.Condition()

    def sent(self, cl_ord_ids: list[str]) -> None:
        now = time.monotonic()
        with self._changed:
            for cl_ord_id in cl_ord_ids:
                self._sent[cl_ord_id] = now
            FIX_IN_FLIGHT.labels(self.topic).set(len(self._sent))

    def ack(self, cl_ord_id: str) -> None:
        with self._changed:
            if self._sent.pop(cl_ord_id, None) is not None:
                FIX_IN_FLIGHT.labels(self.topic).set(len(self._sent))
                self._changed.notify_all()

    def in_flight(self) -> int:
        with self._changed:
            return len(self._sent)

    def wait_for_room(self, timeout: float) -> bool:
        """True once fewer than ``limit`` orders are in flight; False after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._expire_old()
                if len(self._sent) < self.limit:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))

    def _expire_old(self) -> None:
        cutoff = time.monotonic() - self._expire
        for cl_ord_id in [c for c, at in self._sent.items() if at < cutoff]:
            del self._sent[cl_ord_id]
            logger.warning(
                "order unanswered for %.0fs, no longer counted topic=%s trade=%s",
                self._expire,
                self.topic,
                cl_ord_id,
            )


def handle_messages(
    messages: list[tuple[bytes | None, MessagePosition]],
    *,
    fence: Fence,
    session: FixSession,
    dead_letters: DeadLetterSink,
    window: Window | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> list[str]:
    """Handle ``messages`` (raw value, position) in order; returns each one's
    outcome (``handled`` or ``dead_lettered``). Raises Fenced when this process
    is no longer the leader."""
    outcomes: list[str] = []
    run: list[_Work] = []

    def flush() -> None:
        if run:
            outcomes.extend(
                _handle_run(
                    list(run),
                    fence=fence,
                    session=session,
                    dead_letters=dead_letters,
                    window=window,
                    retry=retry,
                )
            )
            run.clear()

    for raw, position in messages:
        work, reason = _decode(raw, position)
        if work is None:
            flush()
            _dead_letter(raw, reason, position, fence, dead_letters)
            outcomes.append(DEAD_LETTERED)
        else:
            run.append(work)
    flush()
    return outcomes


def _decode(raw: bytes | None, position: MessagePosition) -> tuple[_Work | None, str]:
    """The work a message asks for, or None and why it cannot be understood."""
    try:
        event = Event.decode(raw)
    except UndecodableEvent as exc:
        return None, f"undecodable: {exc}"
    if event.event_type not in _PLANNERS:
        return None, f"unknown event type {event.event_type[:64]!r}"
    try:
        trade_id = uuid.UUID(str(event.payload["trade_id"]))
    except (KeyError, ValueError, TypeError, AttributeError):
        return None, f"event {event.event_id} has no valid trade_id"
    return _Work(raw, position, event.event_type, trade_id), ""


def _handle_run(
    run: list[_Work],
    *,
    fence: Fence,
    session: FixSession,
    dead_letters: DeadLetterSink,
    window: Window | None,
    retry: RetryPolicy,
) -> list[str]:
    """One transaction for the run; if it fails for a reason that is not the
    fence or an outage, each message on its own under the poison rule."""
    try:
        until_poisoned(
            lambda: _send_run(run, fence=fence, session=session, window=window),
            fence=fence,
            policy=RetryPolicy(
                first_delay=retry.first_delay,
                max_delay=retry.max_delay,
                poison_attempts=1 if len(run) > 1 else retry.poison_attempts,
            ),
            what=f"handling topic={fence.topic} offsets="
            f"{run[0].position.offset}..{run[-1].position.offset}",
        )
        return [HANDLED] * len(run)
    except Poisoned as exc:
        if len(run) == 1:
            work = run[0]
            _dead_letter(work.raw, exc.reason, work.position, fence, dead_letters)
            return [DEAD_LETTERED]
    outcomes = []
    for work in run:
        outcomes += _handle_run(
            [work],
            fence=fence,
            session=session,
            dead_letters=dead_letters,
            window=window,
            retry=retry,
        )
    return outcomes


def _send_run(
    run: list[_Work], *, fence: Fence, session: FixSession, window: Window | None
) -> None:
    placed: list[str] = []
    handled: list[TradeEvent] = []
    with session.sending() as outbox:
        # The run's trades in one query, not one per message: a planner takes
        # its trade from here once (a second message about the same trade in
        # the run reads it again, after the first one's writes).
        trades = Trade.objects.in_bulk([work.trade_id for work in run])
        token = _RUN_TRADES.set(trades)
        submitted = _RUN_SUBMITTED.set(
            trades_mark_submitted(
                trade_ids=list(
                    dict.fromkeys(
                        work.trade_id
                        for work in run
                        if work.event_type == EventType.TRADE_PLACED
                        and work.trade_id in trades
                        and trades[work.trade_id].status == Status.ACCEPTED
                    )
                ),
                epoch=fence.epoch,
            )
        )
        try:
            outcomes = [
                _PLANNERS[work.event_type](work, outbox, fence, session) for work in run
            ]
        finally:
            _RUN_TRADES.reset(token)
            _RUN_SUBMITTED.reset(submitted)
        for work, outcome in zip(run, outcomes, strict=True):
            record = _handled(work, fence, outcome)
            if record is not None:
                handled.append(record)
            if outcome == "sent" and work.event_type == EventType.TRADE_PLACED:
                placed.append(str(work.trade_id))
        # The timeline records of the run in one insert (each still follows its
        # trade's own status change in id order).
        TradeEvent.objects.bulk_create(handled)
        last: dict[tuple[str, int], MessagePosition] = {}
        for work in run:
            last[(work.position.topic, work.position.partition)] = work.position
        for position in last.values():
            consumer_offset_advance(
                topic=position.topic,
                partition=position.partition,
                next_offset=position.offset + 1,
            )
    if window is not None and placed:
        window.sent(placed)


def _take(trade_id: uuid.UUID) -> Trade | None:
    """The trade as read at the start of the run (once), else as it is now."""
    prefetched = _RUN_TRADES.get()
    trade = prefetched.pop(trade_id, None) if prefetched else None
    return trade or Trade.objects.filter(id=trade_id).first()


def _plan_placed(work: _Work, outbox: Outbox, fence: Fence, session) -> str:
    """Mark the trade submitted and queue its order; what happened, for the
    timeline."""
    trade = _take(work.trade_id)
    while True:
        if trade is None:
            logger.warning("trade.placed for unknown trade=%s skipped", work.trade_id)
            return UNKNOWN_TRADE
        if trade.status in TERMINAL:
            return f"already {trade.status}"
        if trade.status == Status.PENDING_CANCEL and trade.submitted_at is None:
            trade_finish_unsent(
                trade_id=trade.id, to_status=Status.CANCELED, epoch=fence.epoch
            )
            return "canceled before sending"
        if trade.status != Status.ACCEPTED:
            return f"already sent ({trade.status})"
        moved = _RUN_SUBMITTED.get()
        if moved and trade.id in moved:
            moved.discard(trade.id)
            outbox.messages.append(new_order_single(trade))
            return "sent"
        if trade_mark_submitted(trade_id=trade.id, epoch=fence.epoch):
            outbox.messages.append(new_order_single(trade))
            return "sent"
        # The customer's cancel committed between the read and the conditional
        # update: look again rather than send an order the books gave up on.
        trade = Trade.objects.filter(id=work.trade_id).first()


def _plan_cancel(work: _Work, outbox: Outbox, fence: Fence, session) -> str:
    trade = _take(work.trade_id)
    if trade is None:
        return UNKNOWN_TRADE
    if trade.status != Status.PENDING_CANCEL:
        return "nothing to cancel"  # terminal already, or the placement did it
    if trade.submitted_at is None:
        trade_finish_unsent(
            trade_id=trade.id, to_status=Status.CANCELED, epoch=fence.epoch
        )
        return "canceled before sending"
    queued = any(
        m.msg_type == MsgType.ORDER_CANCEL_REQUEST and m.trade_id == trade.id
        for m in outbox.messages
    )
    if queued or state.journaled(
        sender_comp_id=session.config.sender_comp_id,
        trade_ids=[trade.id],
        msg_type=MsgType.ORDER_CANCEL_REQUEST,
    ):
        return "cancel already sent"
    outbox.messages.append(order_cancel_request(trade))
    return "sent"


def _plan_reconcile(work: _Work, outbox: Outbox, fence: Fence, session) -> str:
    """Ask the venue about a trade whose fate is uncertain. A trade not yet sent
    is left to its placement event."""
    trade = _take(work.trade_id)
    if trade is None:
        return UNKNOWN_TRADE
    if not is_reconcilable(trade):
        return "nothing to reconcile"
    outbox.messages.append(order_status_request(trade))
    return "sent"


_PLANNERS = {
    EventType.TRADE_PLACED: _plan_placed,
    EventType.TRADE_CANCEL_REQUESTED: _plan_cancel,
    EventType.TRADE_RECONCILE_REQUESTED: _plan_reconcile,
}
_ACTIONS = {
    EventType.TRADE_PLACED: "place_order",
    EventType.TRADE_CANCEL_REQUESTED: "cancel_order",
    EventType.TRADE_RECONCILE_REQUESTED: "order_status",
}


def _handled(work: _Work, fence: Fence, outcome: str) -> TradeEvent | None:
    """The timeline record of a handled message (to insert): which message,
    which leader, what it did."""
    if outcome == UNKNOWN_TRADE:
        return None
    return TradeEvent(
        trade_id=work.trade_id,
        kind=TradeEvent.Kind.HANDLED,
        epoch=fence.epoch,
        detail={
            "topic": work.position.topic,
            "partition": work.position.partition,
            "offset": work.position.offset,
            "action": _ACTIONS[work.event_type],
            "outcome": outcome,
            "executor": fence.holder,
        },
    )


def _dead_letter(
    raw: bytes | None,
    reason: str,
    position: MessagePosition,
    fence: Fence,
    dead_letters: DeadLetterSink,
) -> None:
    """Copy to the dead-letter topic, then record it and move past it in one
    fenced transaction. A crash in between copies it again on replay; the record
    is unique per position."""
    fence.check_alive()
    dead_letters.send(
        topic=position.topic,
        partition=position.partition,
        offset=position.offset,
        raw=raw,
        reason=reason,
    )
    with fence.transaction():
        dead_letter_record(
            topic=position.topic,
            partition=position.partition,
            offset=position.offset,
            reason=reason,
            payload=raw,
            epoch=fence.epoch,
        )
        consumer_offset_advance(
            topic=position.topic,
            partition=position.partition,
            next_offset=position.offset + 1,
        )
