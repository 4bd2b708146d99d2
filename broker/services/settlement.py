"""Applying the exchange's answer to a trade: fills move cash and shares, terminal
states release what is left of the hold. Replays are no-ops: executions are unique
by exec id and status changes are conditional."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal

from broker.exchange_client import ExchangeExecution, ExchangeOrder
from broker.models import Account, Execution, LedgerEntry, Trade
from broker.services.ledger import Posting, ledger_post
from broker.services.transitions import TERMINAL, trade_transition

logger = logging.getLogger(__name__)

Bucket = LedgerEntry.Bucket
Status = Trade.Status
CENT = Decimal("0.01")
PRICE_TICK = Decimal("0.0001")


def trade_mark_submitted(*, trade_id: object) -> bool:
    """accepted → submitted, just before the order goes to the exchange. Must run in
    the caller's fenced transaction. False if the trade had moved on already."""
    return trade_transition(
        trade_id=trade_id, from_status=Status.ACCEPTED, to_status=Status.SUBMITTED
    )


def trade_apply_order(*, trade_id: object, order: ExchangeOrder) -> Trade:
    """Book the exchange's state of the order: new executions, then the terminal
    status with the release of the unused hold.

    Must run inside the caller's (fenced) transaction; takes the account row lock,
    then the trade row lock (the same order as placement, so no deadlock).
    Applying the same order state twice changes nothing.
    """
    account_id = Trade.objects.values_list("account_id", flat=True).get(id=trade_id)
    account = Account.objects.select_for_update().get(pk=account_id)
    trade = Trade.objects.select_for_update().get(id=trade_id)
    if trade.status in TERMINAL:
        return trade

    known = set(trade.fills.values_list("exec_id", flat=True))
    for report in order.executions:
        if report.exec_id not in known:
            _apply_execution(account=account, trade=trade, report=report)

    if order.status == "filled" and trade.filled_quantity == trade.quantity:
        _finish(account=account, trade=trade, to_status=Status.FILLED)
    elif order.status == "rejected":
        _finish(
            account=account,
            trade=trade,
            to_status=Status.REJECTED,
            reject_reason=order.reject_reason or "rejected by the exchange",
        )
    if order.order_id and trade.exchange_order_id != order.order_id:
        Trade.objects.filter(id=trade.id).update(exchange_order_id=order.order_id)
    trade.refresh_from_db()
    return trade


def trade_reject(*, trade_id: object, reason: str) -> Trade:
    """Reject a trade the exchange definitively refused before it became an order,
    releasing its hold. Must run inside the caller's (fenced) transaction."""
    account_id = Trade.objects.values_list("account_id", flat=True).get(id=trade_id)
    account = Account.objects.select_for_update().get(pk=account_id)
    trade = Trade.objects.select_for_update().get(id=trade_id)
    if trade.status not in TERMINAL:
        _finish(
            account=account,
            trade=trade,
            to_status=Status.REJECTED,
            reject_reason=reason,
        )
    trade.refresh_from_db()
    return trade


def _apply_execution(
    *, account: Account, trade: Trade, report: ExchangeExecution
) -> None:
    execution = Execution.objects.create(
        trade=trade,
        exec_id=report.exec_id,
        quantity=report.quantity,
        price=report.price,
        executed_at=report.executed_at,
    )
    notional = (report.quantity * report.price).quantize(CENT, rounding=ROUND_HALF_UP)
    if trade.side == Trade.Side.BUY:
        from_hold = min(notional, trade.hold_remaining)
        postings = [
            Posting(Bucket.RESERVED_CASH, -from_hold),
            Posting(Bucket.CASH, -notional),
            Posting(Bucket.POSITION, report.quantity, trade.symbol),
        ]
    else:
        from_hold = min(report.quantity, trade.hold_remaining)
        postings = [
            Posting(Bucket.RESERVED_POSITION, -from_hold, trade.symbol),
            Posting(Bucket.POSITION, -report.quantity, trade.symbol),
            Posting(Bucket.CASH, notional),
        ]
    ledger_post(
        account=account,
        kind=LedgerEntry.Kind.FILL,
        postings=postings,
        trade=trade,
        execution=execution,
    )
    previous_value = (trade.average_price or 0) * trade.filled_quantity
    trade.filled_quantity += report.quantity
    trade.average_price = (
        (previous_value + report.quantity * report.price) / trade.filled_quantity
    ).quantize(PRICE_TICK, rounding=ROUND_HALF_UP)
    trade.hold_remaining -= from_hold
    trade.save(update_fields=["filled_quantity", "average_price", "hold_remaining"])
    logger.info(
        "fill applied trade=%s customer=%s exec=%s qty=%s price=%s",
        trade.id,
        account.customer_id,
        report.exec_id,
        report.quantity,
        report.price,
    )


def _finish(
    *, account: Account, trade: Trade, to_status: str, **fields: object
) -> None:
    """Move to a terminal status and release whatever is still held."""
    if not trade_transition(
        trade_id=trade.id,
        from_status=trade.status,
        to_status=to_status,
        hold_remaining=Decimal(0),
        **fields,
    ):
        return
    if trade.hold_remaining:
        bucket = (
            Bucket.RESERVED_CASH
            if trade.side == Trade.Side.BUY
            else (Bucket.RESERVED_POSITION)
        )
        symbol = "" if trade.side == Trade.Side.BUY else trade.symbol
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.RELEASE,
            postings=[Posting(bucket, -trade.hold_remaining, symbol)],
            trade=trade,
        )
    logger.info(
        "trade %s trade=%s customer=%s", to_status, trade.id, account.customer_id
    )
