"""The transactional outbox: events are rows written with the change they announce;
the relay publishes them to Kafka after commit."""

from __future__ import annotations

import logging

from django.db import connection, transaction

from broker.models import OutboxEvent, Trade, TradeEvent
from broker.topics import topic_for_customer

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox"


def outbox_enqueue(*, customer_id: int, event_type: str, payload: dict) -> OutboxEvent:
    """Insert an event for the customer's topic. Must run inside the transaction of
    the change it announces; wakes the relay once that transaction commits.

    The NOTIFY is sent after commit, on its own: a NOTIFY inside the placement
    transaction takes a global lock at commit and would serialise all placements.
    """
    event = OutboxEvent.objects.create(
        topic=topic_for_customer(customer_id),
        key=str(customer_id),
        event_type=event_type,
        payload=payload,
    )
    transaction.on_commit(_wake_relay)
    return event


def outbox_enqueue_for_trade(
    *, trade: Trade, customer_id: int, event_type: str, **detail: object
) -> OutboxEvent:
    """A trade event for the customer's topic, and its line on the trade's timeline.
    Must run inside the transaction of the change it announces."""
    event = outbox_enqueue(
        customer_id=customer_id,
        event_type=event_type,
        payload={"trade_id": str(trade.id), "customer_id": customer_id},
    )
    TradeEvent.objects.create(
        trade=trade,
        kind=TradeEvent.Kind.OUTBOX,
        detail={
            "outbox_id": event.pk,
            "event_type": event.event_type,
            "topic": event.topic,
            **detail,
        },
    )
    return event


def _wake_relay() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"NOTIFY {NOTIFY_CHANNEL}")
    except Exception:  # the relay's polling fallback still picks the event up
        logger.warning("outbox notify failed; relay will poll", exc_info=True)
