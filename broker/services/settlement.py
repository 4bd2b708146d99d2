"""Applying the exchange's word to a trade: fills move cash and shares, terminal
states release what is left of the hold. Replays are no-ops: executions are unique
by exec id and status changes are conditional. The exchange is the source of truth
for executions; these functions only ever catch the trade up with it."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_UP, Decimal

from broker.exchange_client import ExchangeExecution, ExchangeOrder
from broker.models import Account, Execution, LedgerEntry, Trade, TradeEvent
from broker.services.ledger import Posting, ledger_post
from broker.services.transitions import TERMINAL, can_transition, trade_transition

logger = logging.getLogger(__name__)

Bucket = LedgerEntry.Bucket
Status = Trade.Status
CENT = Decimal("0.01")
PRICE_TICK = Decimal("0.0001")

# Exchange order status → the trade status it ends in (open states map to None:
# the trade's status follows its fills instead).
_TERMINAL_FROM_EXCHANGE = {
    "filled": Status.FILLED,
    "canceled": Status.CANCELED,
    "expired": Status.EXPIRED,
    "rejected": Status.REJECTED,
}


def trade_mark_submitted(*, trade_id: object, epoch: int | None = None) -> bool:
    """accepted → submitted, just before the order goes to the exchange. Must run in
    the caller's fenced transaction. False if the trade had moved on already."""
    return trade_transition(
        trade_id=trade_id,
        from_status=Status.ACCEPTED,
        to_status=Status.SUBMITTED,
        epoch=epoch,
    )


def _lock(trade_id: object) -> tuple[Account, Trade]:
    """Account row lock, then trade row lock: the same order as placement and
    cancellation, so no deadlock."""
    account_id = Trade.objects.values_list("account_id", flat=True).get(id=trade_id)
    account = Account.objects.select_for_update().get(pk=account_id)
    trade = Trade.objects.select_for_update().get(id=trade_id)
    return account, trade


def trade_apply_order(
    *, trade_id: object, order: ExchangeOrder, epoch: int | None = None
) -> Trade:
    """Book the exchange's state of the order: new executions first, then the status
    it implies, releasing the unused hold on a terminal state.

    Must run inside the caller's (fenced) transaction. Applying the same or an older
    order state again changes nothing.
    """
    account, trade = _lock(trade_id)
    known = set(trade.fills.values_list("exec_id", flat=True))
    for report in order.executions:
        if report.exec_id not in known:
            _apply_execution(account=account, trade=trade, report=report, epoch=epoch)
            known.add(report.exec_id)
    if order.order_id and trade.exchange_order_id != order.order_id:
        Trade.objects.filter(id=trade.id).update(exchange_order_id=order.order_id)

    if trade.status in TERMINAL:
        return _refreshed(trade)
    target = _TERMINAL_FROM_EXCHANGE.get(order.status)
    if target == Status.FILLED and trade.filled_quantity < trade.quantity:
        # The order says filled but not every execution has reached us yet: wait
        # for them (they come with the feed) rather than book money we have not seen.
        target = None
    if target is not None:
        _finish(
            account=account,
            trade=trade,
            to_status=target,
            epoch=epoch,
            reject_reason=order.reject_reason if target == Status.REJECTED else "",
        )
    elif trade.filled_quantity > 0 and trade.status == Status.SUBMITTED:
        trade_transition(
            trade_id=trade.id,
            from_status=Status.SUBMITTED,
            to_status=Status.PARTIALLY_FILLED,
            epoch=epoch,
        )
    return _refreshed(trade)


def trade_finish_unsent(
    *, trade_id: object, to_status: str, reason: str = "", epoch: int | None = None
) -> Trade:
    """End a trade the exchange never took as an order: refused outright
    (``rejected``), or canceled before it was sent (``canceled``). Releases the
    hold. Must run inside the caller's (fenced) transaction."""
    account, trade = _lock(trade_id)
    if trade.status not in TERMINAL:
        _finish(
            account=account,
            trade=trade,
            to_status=to_status,
            epoch=epoch,
            reject_reason=reason if to_status == Status.REJECTED else "",
        )
    return _refreshed(trade)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _refreshed(trade: Trade) -> Trade:
    trade.refresh_from_db()
    return trade


def _apply_execution(
    *, account: Account, trade: Trade, report: ExchangeExecution, epoch: int | None
) -> None:
    value_before = sum(
        (f.quantity * f.price for f in trade.fills.all()), start=Decimal(0)
    )
    value_after = value_before + report.quantity * report.price
    execution = Execution.objects.create(
        trade=trade,
        exec_id=report.exec_id,
        quantity=report.quantity,
        price=report.price,
        executed_at=report.executed_at,
    )
    # Cumulative rounding: the cents charged over all fills add up to the rounded
    # total value, never to a sum of per-fill roundings that could exceed the hold.
    notional = _cents(value_after) - _cents(value_before)
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
    trade.filled_quantity += report.quantity
    trade.average_price = (value_after / trade.filled_quantity).quantize(
        PRICE_TICK, rounding=ROUND_HALF_UP
    )
    trade.hold_remaining -= from_hold
    trade.save(
        update_fields=[
            "filled_quantity",
            "average_price",
            "hold_remaining",
            "updated_at",
        ]
    )
    TradeEvent.objects.create(
        trade=trade,
        kind="fill",
        status=trade.status,
        epoch=epoch,
        detail={
            "exec_id": report.exec_id,
            "quantity": str(report.quantity),
            "price": str(report.price),
            "executed_at": report.executed_at.isoformat(),
        },
    )
    logger.info(
        "fill applied trade=%s customer=%s exec=%s qty=%s price=%s epoch=%s",
        trade.id,
        account.customer_id,
        report.exec_id,
        report.quantity,
        report.price,
        epoch,
    )


def _finish(
    *,
    account: Account,
    trade: Trade,
    to_status: str,
    epoch: int | None,
    reject_reason: str = "",
) -> None:
    """Move to a terminal status and release whatever is still held."""
    if not can_transition(trade.status, to_status):
        logger.error(
            "exchange state %s not reachable from %s trade=%s",
            to_status,
            trade.status,
            trade.id,
        )
        return
    fields: dict[str, object] = {"hold_remaining": Decimal(0)}
    if reject_reason:
        fields["reject_reason"] = reject_reason[:200]
    if not trade_transition(
        trade_id=trade.id,
        from_status=trade.status,
        to_status=to_status,
        epoch=epoch,
        **fields,
    ):
        return
    if trade.hold_remaining:
        if trade.side == Trade.Side.BUY:
            posting = Posting(Bucket.RESERVED_CASH, -trade.hold_remaining)
        else:
            posting = Posting(
                Bucket.RESERVED_POSITION, -trade.hold_remaining, trade.symbol
            )
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.RELEASE,
            postings=[posting],
            trade=trade,
        )
    logger.info(
        "trade %s trade=%s customer=%s filled=%s epoch=%s",
        to_status,
        trade.id,
        account.customer_id,
        trade.filled_quantity,
        epoch,
    )
