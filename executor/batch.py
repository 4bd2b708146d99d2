"""Several messages of a poll handled together: a run of consecutive
``trade.placed`` messages goes through one fenced transaction per phase instead of
two per message (one epoch check, one commit and one offset write per phase for
the whole run).

The phases are those of ``handlers`` for one message: (1) mark every trade of the
run submitted, (2) send their orders one after the other, in message order (so a
customer's orders reach the exchange in the order they were placed), (3) book
every answer and store the offset after the run. A crash between phases replays
the run, and every step of a replay is a no-op or a request the exchange
deduplicates, exactly as for one message. Anything that is not a ``trade.placed``
message, a run of one, and a run whose batched handling fails for any reason other
than the fence, go through ``handle_message`` one message at a time (which also
waits out outages and dead-letters poison).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from broker.events import Event, EventType, UndecodableEvent
from broker.exchange_client import ExchangeClient, ExchangeOrder, StaleEpoch
from broker.models import Trade, TradeEvent
from broker.services.settlement import lock_accounts_of
from broker.services.transitions import TERMINAL
from executor.booked import BookedOrders
from executor.dead_letters import DeadLetterSink
from executor.fencing import Fence, Fenced
from executor.handlers import (
    HANDLED,
    Answer,
    MessagePosition,
    book_answer,
    exchange_answer,
    handle_message,
    handled_event,
    log_settled,
    order_sender,
    store_offset,
    trade_to_send,
)
from executor.retry import DEFAULT_RETRY, RetryPolicy

logger = logging.getLogger(__name__)

Status = Trade.Status


@dataclass
class _Placed:
    raw: bytes | None
    position: MessagePosition
    trade_id: uuid.UUID
    trade: Trade | None = None
    answer: Answer = None


def handle_messages(
    messages: list[tuple[bytes | None, MessagePosition]],
    *,
    fence: Fence,
    exchange: ExchangeClient,
    dead_letters: DeadLetterSink,
    retry: RetryPolicy = DEFAULT_RETRY,
    booked: BookedOrders | None = None,
) -> list[str]:
    """Handle ``messages`` (raw value, position) in order; returns each one's
    outcome. Raises Fenced when this process is no longer the leader."""

    def one_by_one(items: list[tuple[bytes | None, MessagePosition]]) -> list[str]:
        return [
            handle_message(
                raw,
                position=position,
                fence=fence,
                exchange=exchange,
                dead_letters=dead_letters,
                retry=retry,
                booked=booked,
            )
            for raw, position in items
        ]

    outcomes: list[str] = []
    run: list[_Placed] = []

    def flush_run() -> None:
        if len(run) > 1:
            try:
                _handle_placed_run(
                    run, fence=fence, exchange=exchange, retry=retry, booked=booked
                )
            except StaleEpoch as exc:
                raise Fenced(
                    f"{fence.topic}: the exchange knows a newer epoch"
                ) from exc
            except Fenced:
                raise
            except Exception:
                logger.warning(
                    "batched handling failed, one by one topic=%s offsets=%s..%s",
                    fence.topic,
                    run[0].position.offset,
                    run[-1].position.offset,
                    exc_info=True,
                )
                outcomes.extend(one_by_one([(p.raw, p.position) for p in run]))
            else:
                outcomes.extend(HANDLED for _ in run)
        else:
            outcomes.extend(one_by_one([(p.raw, p.position) for p in run]))
        run.clear()

    for raw, position in messages:
        trade_id = _placed_trade_id(raw)
        if trade_id is None:
            flush_run()
            outcomes.extend(one_by_one([(raw, position)]))
        else:
            run.append(_Placed(raw, position, trade_id))
    flush_run()
    return outcomes


def _placed_trade_id(raw: bytes | None) -> uuid.UUID | None:
    """The trade of a well-formed ``trade.placed`` message; None for anything else
    (which the one-message path handles, dead letters included)."""
    try:
        event = Event.decode(raw)
        if event.event_type != EventType.TRADE_PLACED:
            return None
        return uuid.UUID(str(event.payload["trade_id"]))
    except (UndecodableEvent, KeyError, ValueError, TypeError):
        return None


def _handle_placed_run(
    run: list[_Placed],
    *,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
    booked: BookedOrders | None,
) -> None:
    with fence.transaction():
        to_send = []
        for placed in run:
            trade = trade_to_send(placed.trade_id, placed.position, fence)
            if trade is not None:
                to_send.append((placed, trade, trade.status != Status.ACCEPTED))
    in_flight = [str(placed.trade_id) for placed, _, _ in to_send]
    booked = booked or BookedOrders()
    booked.begin(in_flight)
    try:
        _send_and_book(run, to_send, fence=fence, exchange=exchange, retry=retry)
        for placed, _, _ in to_send:
            if isinstance(placed.answer, ExchangeOrder) and placed.trade.status in (
                TERMINAL
            ):
                booked.add(placed.answer)
    finally:
        booked.end(in_flight)


def _send_and_book(
    run: list[_Placed],
    to_send: list[tuple[_Placed, Trade, bool]],
    *,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
) -> None:
    """Phases 2 and 3: the orders in message order, then one transaction books
    every answer and stores the offset after the run."""
    for placed, trade, uncertain in to_send:
        placed.answer = exchange_answer(
            order_sender(trade, exchange, uncertain=uncertain),
            trade_id=trade.id,
            action="place_order",
            fence=fence,
            retry=retry,
        )

    with fence.transaction():
        lock_accounts_of([placed.trade_id for placed, _, _ in to_send])
        events = []
        for placed, _, _ in to_send:
            placed.trade, outcome = book_answer(
                placed.trade_id, placed.answer, epoch=fence.epoch
            )
            order = placed.answer if isinstance(placed.answer, ExchangeOrder) else None
            events.append(
                handled_event(
                    placed.position,
                    fence,
                    placed.trade_id,
                    "place_order",
                    outcome,
                    order,
                )
            )
        TradeEvent.objects.bulk_create(events)
        last: dict[tuple[str, int], MessagePosition] = {}
        for placed in run:
            last[(placed.position.topic, placed.position.partition)] = placed.position
        for position in last.values():
            store_offset(position)
    for placed, _, _ in to_send:
        log_settled(placed.trade, "place_order", fence)
