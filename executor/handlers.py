"""Turns one Kafka message into service calls; knows nothing of Kafka or ZooKeeper,
so it is unit-testable with a fake exchange.

Per message: (1) fenced transaction: accepted → submitted; (2) the order goes to
the exchange, idempotent by client_order_id = trade id; (3) fenced transaction:
apply the exchange's answer and advance the stored offset. A crash anywhere replays
the message, and every step of a replay is a no-op or a resend the exchange
deduplicates.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from broker.errors import Fenced
from broker.events import Event, UndecodableEvent
from broker.exchange_client import (
    ExchangeClient,
    ExchangeError,
    ExchangeOrder,
    ExchangeRefused,
)
from broker.models import Trade
from broker.services.leadership import consumer_offset_advance
from broker.services.settlement import (
    trade_apply_order,
    trade_mark_submitted,
    trade_reject,
)
from broker.services.transitions import TERMINAL
from executor.fencing import Fence

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessagePosition:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 0.05
    max_delay: float = 2.0


def handle_message(
    raw: bytes | None,
    *,
    position: MessagePosition,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy = RetryPolicy(),
) -> None:
    """Process one message completely, ending with its offset stored in PostgreSQL.
    Raises Fenced when this process is no longer the leader (nothing committed
    after that point)."""
    try:
        event = Event.decode(raw)
    except UndecodableEvent as exc:
        logger.error(
            "undecodable message skipped topic=%s partition=%s offset=%s error=%s",
            position.topic,
            position.partition,
            position.offset,
            exc,
        )
        _advance(fence, position)
        return
    if event.event_type == "trade.placed":
        _handle_trade_placed(
            event, position=position, fence=fence, exchange=exchange, retry=retry
        )
    else:
        logger.error(
            "unknown event type skipped type=%s event=%s topic=%s offset=%s",
            event.event_type,
            event.event_id,
            position.topic,
            position.offset,
        )
        _advance(fence, position)


def _advance(fence: Fence, position: MessagePosition) -> None:
    with fence.transaction():
        _store_offset(position)


def _store_offset(position: MessagePosition) -> None:
    consumer_offset_advance(
        topic=position.topic,
        partition=position.partition,
        next_offset=position.offset + 1,
    )


def _handle_trade_placed(
    event: Event,
    *,
    position: MessagePosition,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
) -> None:
    try:
        trade_id = uuid.UUID(str(event.payload["trade_id"]))
    except (KeyError, ValueError):
        logger.error("trade.placed without a valid trade_id event=%s", event.event_id)
        _advance(fence, position)
        return

    with fence.transaction():
        trade = Trade.objects.filter(id=trade_id).first()
        if trade is None or trade.status in TERMINAL:
            if trade is None:
                logger.warning("trade.placed for unknown trade=%s skipped", trade_id)
            _store_offset(position)
            return
        resend = trade.status != Trade.Status.ACCEPTED
        if not resend:
            trade_mark_submitted(trade_id=trade_id)

    try:
        order = _send(trade, resend=resend, fence=fence, exchange=exchange, retry=retry)
    except ExchangeRefused as exc:
        logger.warning(
            "exchange refused trade=%s code=%s detail=%s",
            trade_id,
            exc.code,
            exc.detail,
        )
        with fence.transaction():
            trade_reject(trade_id=trade_id, reason=exc.code)
            _store_offset(position)
        return

    with fence.transaction():
        settled = trade_apply_order(trade_id=trade_id, order=order)
        _store_offset(position)
    logger.info(
        "trade settled trade=%s status=%s topic=%s epoch=%s",
        trade_id,
        settled.status,
        fence.topic,
        fence.epoch,
    )


def _send(
    trade: Trade,
    *,
    resend: bool,
    fence: Fence,
    exchange: ExchangeClient,
    retry: RetryPolicy,
) -> ExchangeOrder:
    """Get the order to the exchange at least once. When the outcome of an earlier
    attempt is unknown (a replay, a lost answer), ask the exchange first: it is the
    source of truth, and a resend is deduplicated anyway."""
    delay = retry.first_delay
    while True:
        fence.check_alive()
        try:
            if resend:
                known = exchange.order(trade.client_order_id)
                if known is not None:
                    return known
            return exchange.place_order(
                client_order_id=trade.client_order_id,
                symbol=trade.symbol,
                side=trade.side,
                quantity=trade.quantity,
                order_type=trade.type,
                collar_price=trade.collar_price,
            )
        except ExchangeError as exc:
            logger.warning(
                "exchange unavailable, retrying trade=%s in %.2fs error=%s",
                trade.id,
                delay,
                exc,
            )
            resend = True
            time.sleep(delay)
            delay = min(delay * 2, retry.max_delay)


__all__ = ["Fenced", "MessagePosition", "RetryPolicy", "handle_message"]
