"""CancelTrade: the request is recorded and travels through the outbox and the
customer's topic, so the executor sees it after the trade it cancels."""

from __future__ import annotations

import logging

from django.db import transaction

from broker.errors import TradeNotCancelable, TradeNotFound
from broker.events import EventType
from broker.models import Account, Customer, Trade
from broker.services.outbox import outbox_enqueue_for_trade
from broker.services.transitions import CANCELABLE, trade_transition

logger = logging.getLogger(__name__)


def trade_request_cancel(
    *, customer: Customer, trade_id: object, requested_by: str = "customer"
) -> Trade:
    """Move the customer's trade to ``pending_cancel`` and enqueue
    ``trade.cancel_requested``, in one transaction under the account row lock.

    Idempotent: a trade already pending cancel is returned unchanged, with no second
    event. Raises TradeNotFound (not this customer's, or no such trade) or
    TradeNotCancelable (already terminal).
    """
    with transaction.atomic():
        account = Account.objects.select_for_update().get(customer=customer)
        trade = (
            Trade.objects.select_for_update()
            .filter(account=account, id=trade_id)
            .first()
        )
        if trade is None:
            raise TradeNotFound("no such trade")
        if trade.status == Trade.Status.PENDING_CANCEL:
            return trade
        if trade.status not in CANCELABLE:
            raise TradeNotCancelable(f"the trade is already {trade.status}")
        trade_transition(
            trade_id=trade.id,
            from_status=trade.status,
            to_status=Trade.Status.PENDING_CANCEL,
            detail={"requested_by": requested_by},
        )
        outbox_enqueue_for_trade(
            trade=trade,
            customer_id=customer.pk,
            event_type=EventType.TRADE_CANCEL_REQUESTED,
        )
        trade.refresh_from_db()
    logger.info("cancel requested trade=%s customer=%s", trade.id, customer.pk)
    return trade


def trade_request_reconcile(*, trade: Trade, requested_by: str) -> None:
    """Ask the topic's leader to compare the trade with the exchange's record and
    catch it up. It travels the same outbox and topic as the trade's other events:
    only the leader writes trades."""
    with transaction.atomic():
        outbox_enqueue_for_trade(
            trade=trade,
            customer_id=trade.account.customer_id,
            event_type=EventType.TRADE_RECONCILE_REQUESTED,
            requested_by=requested_by,
        )
