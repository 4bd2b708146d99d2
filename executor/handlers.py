"""Turns one Kafka message into service calls; knows nothing of Kafka or ZooKeeper,
so it is unit-testable with a fake exchange.

trade.placed: (1) fenced transaction: accepted → submitted; (2) the order goes to
the exchange, idempotent by client_order_id = trade id; (3) fenced transaction:
apply the exchange's answer and advance the stored offset.
trade.cancel_requested: the cancel goes to the exchange, and its answer (canceled,
or filled when the fill won the race) is applied the same way.

A crash anywhere replays the message, and every step of a replay is a no-op or a
request the exchange deduplicates; an attempt whose outcome is unknown is resolved
by asking the exchange before sending again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from broker.events import Event, EventType, UndecodableEvent
from broker.exchange_client import (
    ExchangeClient,
    ExchangeError,
    ExchangeOrder,
    ExchangeRefused,
    StaleEpoch,
)
from broker.models import Trade, TradeEvent
from broker.observability.metrics import EXCHANGE_RETRIES
from broker.services.settlement import (
    trade_apply_order,
    trade_finish_unsent,
    trade_mark_submitted,
)
from broker.services.transitions import TERMINAL, is_reconcilable
from executor.booked import BookedOrders
from executor.dead_letters import DeadLetterSink, dead_letter_record
from executor.fencing import Fence, Fenced
from executor.offsets import consumer_offset_advance
from executor.retry import (
    DEFAULT_RETRY,
    Backoff,
    Poisoned,
    RetryPolicy,
    until_poisoned,
)

logger = logging.getLogger(__name__)

Status = Trade.Status
T = TypeVar("T")
HANDLED = "handled"
DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class MessagePosition:
    topic: str
    partition: int
    offset: int


def handle_message(
    raw: bytes | None,
    *,
    position: MessagePosition,
    fence: Fence,
    exchange: ExchangeClient,
    dead_letters: DeadLetterSink,
    retry: RetryPolicy = DEFAULT_RETRY,
    booked: BookedOrders | None = None,
) -> str:
    """Process one message completely, ending with its offset stored in PostgreSQL;
    returns the outcome, ``handled`` or ``dead_lettered``.

    A message that cannot be understood goes to the dead-letter topic at once; one
    whose handling fails for a reason that is not an outage (database or network
    down) is retried ``retry.poison_attempts`` times, then dead-lettered, so no
    message can stall its topic. Raises Fenced when this process is no longer the
    leader (nothing committed after that point). Orders it books terminal are
    recorded in ``booked`` (for the report feed to pass over their echo).
    """
    try:
        event = Event.decode(raw)
    except UndecodableEvent as exc:
        _dead_letter(raw, f"undecodable: {exc}", position, fence, dead_letters)
        return DEAD_LETTERED
    handler = _HANDLERS.get(event.event_type)
    if handler is None:
        reason = f"unknown event type {event.event_type!r}"
        _dead_letter(raw, reason, position, fence, dead_letters)
        return DEAD_LETTERED
    try:
        trade_id = uuid.UUID(str(event.payload["trade_id"]))
    except (KeyError, ValueError):
        reason = f"event {event.event_id} has no valid trade_id"
        _dead_letter(raw, reason, position, fence, dead_letters)
        return DEAD_LETTERED

    def handle() -> None:
        try:
            handler(
                trade_id,
                position=position,
                fence=fence,
                exchange=exchange,
                retry=retry,
                booked=booked,
            )
        except StaleEpoch as exc:
            raise Fenced(f"{fence.topic}: the exchange knows a newer epoch") from exc

    try:
        until_poisoned(
            handle,
            fence=fence,
            policy=retry,
            what=f"handling topic={position.topic} offset={position.offset}",
        )
    except Poisoned as exc:
        _dead_letter(raw, exc.reason, position, fence, dead_letters)
        return DEAD_LETTERED
    return HANDLED


def _dead_letter(
    raw: bytes | None,
    reason: str,
    position: MessagePosition,
    fence: Fence,
    dead_letters: DeadLetterSink,
) -> None:
    """Copy to the dead-letter topic, then record it and move past it in one fenced
    transaction. A crash in between copies it again on replay; the record is
    unique per position."""
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
        store_offset(position)


def _done(
    position: MessagePosition,
    fence: Fence,
    trade_id: uuid.UUID,
    action: str,
    outcome: str = "",
    order: ExchangeOrder | None = None,
) -> None:
    """End of a message that touched a trade: leave the timeline record (which
    message, which leader, what the exchange said) and store the offset."""
    handled_event(position, fence, trade_id, action, outcome, order).save()
    store_offset(position)


def handled_event(
    position: MessagePosition,
    fence: Fence,
    trade_id: uuid.UUID,
    action: str,
    outcome: str = "",
    order: ExchangeOrder | None = None,
) -> TradeEvent:
    """The timeline record of a handled message (unsaved)."""
    return TradeEvent(
        trade_id=trade_id,
        kind=TradeEvent.Kind.HANDLED,
        epoch=fence.epoch,
        detail={
            "topic": position.topic,
            "partition": position.partition,
            "offset": position.offset,
            "action": action,
            "outcome": outcome or (order.status if order else ""),
            "exchange_order_id": order.order_id if order else "",
            "executor": fence.holder,
        },
    )


def store_offset(position: MessagePosition) -> None:
    consumer_offset_advance(
        topic=position.topic,
        partition=position.partition,
        next_offset=position.offset + 1,
    )


def _handle_trade_placed(
    trade_id: uuid.UUID,
    *,
    position: MessagePosition,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
    booked: BookedOrders | None,
) -> None:
    with fence.transaction():
        trade = trade_to_send(trade_id, position, fence)
        if trade is None:
            return
        send = order_sender(trade, exchange, uncertain=trade.status != Status.ACCEPTED)

    _exchange_then_settle(send, trade_id, "place_order", position, fence, retry, booked)


def trade_to_send(
    trade_id: uuid.UUID, position: MessagePosition, fence: Fence
) -> Trade | None:
    """The trade as it is when its order may go out, marked submitted if it was
    still accepted; None when there is nothing to send (finished here, inside the
    caller's fenced transaction)."""
    while True:
        trade = Trade.objects.filter(id=trade_id).first()
        if trade is None or trade.status in TERMINAL:
            if trade is None:
                logger.warning("trade.placed for unknown trade=%s skipped", trade_id)
            store_offset(position)
            return None
        if trade.status == Status.PENDING_CANCEL and trade.submitted_at is None:
            _cancel_unsent(trade_id, position, fence)
            return None
        if trade.status != Status.ACCEPTED or trade_mark_submitted(
            trade_id=trade_id, epoch=fence.epoch
        ):
            return trade
        # The trade moved between the read and the conditional update (the
        # customer's cancel committed): look again rather than send an order the
        # books have already given up on.


def _handle_reconcile_requested(
    trade_id: uuid.UUID,
    *,
    position: MessagePosition,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
    booked: BookedOrders | None,
) -> None:
    """Catch a trade up with the exchange's record of it (operations or the stuck
    trade job asked). A trade not yet sent is left to its placement event."""
    with fence.transaction():
        trade = Trade.objects.filter(id=trade_id).first()
        if trade is None or not is_reconcilable(trade):
            store_offset(position)
            return
    _exchange_then_settle(
        lambda: send_order(trade, exchange=exchange, uncertain=True),
        trade_id,
        "reconcile",
        position,
        fence,
        retry,
        booked,
    )


def _handle_cancel_requested(
    trade_id: uuid.UUID,
    *,
    position: MessagePosition,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
    booked: BookedOrders | None,
) -> None:
    with fence.transaction():
        trade = Trade.objects.filter(id=trade_id).first()
        if trade is None or trade.status != Status.PENDING_CANCEL:
            # Terminal already (a fill won, or the placement handled the cancel).
            store_offset(position)
            return
        if trade.submitted_at is None:
            _cancel_unsent(trade_id, position, fence)
            return
    # None from the exchange: it never took the order, nothing can fill it now.
    _exchange_then_settle(
        lambda: exchange.cancel_order(trade.exchange_client_order_id),
        trade_id,
        "cancel_order",
        position,
        fence,
        retry,
        booked,
    )


def _cancel_unsent(trade_id: uuid.UUID, position: MessagePosition, fence: Fence):
    """Canceled before it was ever sent: nothing to ask the exchange. Runs inside
    the caller's fenced transaction."""
    trade_finish_unsent(trade_id=trade_id, to_status=Status.CANCELED, epoch=fence.epoch)
    _done(position, fence, trade_id, "none", "canceled before sending")


def _exchange_then_settle(
    call: Callable[[], ExchangeOrder | None],
    trade_id: uuid.UUID,
    action: str,
    position: MessagePosition,
    fence: Fence,
    retry: RetryPolicy,
    booked: BookedOrders | None = None,
) -> None:
    """Get the exchange's answer (retrying outages), then book it and store the
    offset in one fenced transaction. A definitive refusal rejects the trade; no
    order at the exchange (None) cancels it. While this runs, ``booked`` has the
    order in flight (the report feed waits for it rather than book it too)."""
    if booked is None:
        booked = BookedOrders()
    booked.begin([str(trade_id)])
    try:
        _answer_then_book(call, trade_id, action, position, fence, retry, booked)
    finally:
        booked.end([str(trade_id)])


def _answer_then_book(
    call: Callable[[], ExchangeOrder | None],
    trade_id: uuid.UUID,
    action: str,
    position: MessagePosition,
    fence: Fence,
    retry: RetryPolicy,
    booked: BookedOrders,
) -> None:
    answer = exchange_answer(
        call, trade_id=trade_id, action=action, fence=fence, retry=retry
    )
    with fence.transaction():
        settled, outcome = book_answer(trade_id, answer, epoch=fence.epoch)
        order = answer if isinstance(answer, ExchangeOrder) else None
        _done(position, fence, trade_id, action, outcome, order)
    if order is not None and settled.status in TERMINAL:
        booked.add(order)
    log_settled(settled, action, fence)


# The exchange's answer to an order request: its state of the order, a definitive
# refusal, or None (it never took the order and a cancel is pending).
Answer = ExchangeOrder | ExchangeRefused | None


def exchange_answer(
    call: Callable[[], ExchangeOrder | None],
    *,
    trade_id: uuid.UUID,
    action: str,
    fence: Fence,
    retry: RetryPolicy,
) -> Answer:
    """``call`` until the exchange answers (retrying outages); a definitive
    refusal is an answer too. StaleEpoch propagates."""
    try:
        return with_retry(call, fence=fence, retry=retry, trade_id=trade_id)
    except StaleEpoch:
        raise
    except ExchangeRefused as exc:
        logger.warning(
            "exchange refused trade=%s action=%s code=%s detail=%s",
            trade_id,
            action,
            exc.code,
            exc.detail,
        )
        return exc


def book_answer(
    trade_id: uuid.UUID, answer: Answer, *, epoch: int
) -> tuple[Trade, str]:
    """Book the exchange's answer inside the caller's fenced transaction: a
    refusal rejects the trade, no order cancels it, an order state is applied.
    Returns the trade and the outcome for its timeline."""
    if isinstance(answer, ExchangeRefused):
        trade = trade_finish_unsent(
            trade_id=trade_id,
            to_status=Status.REJECTED,
            reason=answer.code,
            epoch=epoch,
        )
        return trade, f"refused: {answer.code}"
    if answer is None:
        trade = trade_finish_unsent(
            trade_id=trade_id, to_status=Status.CANCELED, epoch=epoch
        )
    else:
        trade = trade_apply_order(trade_id=trade_id, order=answer, epoch=epoch)
    return trade, trade.status


def log_settled(trade: Trade, action: str, fence: Fence) -> None:
    logger.info(
        "trade settled trade=%s action=%s status=%s topic=%s epoch=%s",
        trade.id,
        action,
        trade.status,
        fence.topic,
        fence.epoch,
    )


def order_sender(
    trade: Trade, exchange: ExchangeClient, *, uncertain: bool
) -> Callable[[], ExchangeOrder | None]:
    """One ``send_order`` per call; after any attempt an error leaves the outcome
    unknown, so every later attempt asks the exchange first."""

    def send() -> ExchangeOrder | None:
        nonlocal uncertain
        try:
            return send_order(trade, exchange=exchange, uncertain=uncertain)
        finally:
            uncertain = True

    return send


def send_order(
    trade: Trade, *, exchange: ExchangeClient, uncertain: bool
) -> ExchangeOrder | None:
    """Get the trade's order to the exchange once. When an earlier attempt may have
    reached it, ask first: the exchange's record is the truth. Returns None when
    the exchange does not have it and a cancel is pending (do not send it now)."""
    if uncertain:
        known = exchange.order(trade.exchange_client_order_id)
        if known is not None or trade.status == Status.PENDING_CANCEL:
            return known
    return exchange.place_order(
        client_order_id=trade.exchange_client_order_id,
        symbol=trade.symbol,
        side=trade.side,
        quantity=trade.quantity,
        order_type=trade.type,
        time_in_force=trade.time_in_force,
        limit_price=trade.limit_price,
        collar_price=trade.collar_price,
    )


def with_retry(
    call: Callable[[], T], *, fence: Fence, retry: RetryPolicy, trade_id: object
) -> T:
    """Call until the exchange answers (ExchangeRefused is an answer). Backs off
    exponentially; gives up only when this process stops being the leader."""
    backoff = Backoff(retry)
    while True:
        fence.check_alive()
        try:
            return call()
        except ExchangeError as exc:
            EXCHANGE_RETRIES.inc()
            delay = backoff.next()
            logger.warning(
                "exchange unavailable, retrying trade=%s in %.2fs error=%s",
                trade_id,
                delay,
                exc,
            )
            time.sleep(delay)


_HANDLERS = {
    EventType.TRADE_PLACED: _handle_trade_placed,
    EventType.TRADE_CANCEL_REQUESTED: _handle_cancel_requested,
    EventType.TRADE_RECONCILE_REQUESTED: _handle_reconcile_requested,
}
