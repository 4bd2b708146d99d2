"""Applying the exchange's word to a trade: fills move cash and shares, terminal
states release what is left of the hold. Replays are no-ops: executions are unique
by exec id and status changes are conditional. The exchange is the source of truth
for executions; these functions only ever catch the trade up with it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Subquery
from django.utils import timezone

from broker.models import Account, Execution, LedgerEntry, Trade, TradeEvent
from broker.money import to_cents, to_ticks
from broker.services.ledger import LedgerWriter, Posting
from broker.services.transitions import TERMINAL, can_transition, trade_transition

logger = logging.getLogger(__name__)

Bucket = LedgerEntry.Bucket
Status = Trade.Status


@dataclass(frozen=True)
class VenueFill:
    """One execution as the exchange reported it."""

    exec_id: str
    quantity: Decimal
    price: Decimal
    executed_at: datetime


@dataclass(frozen=True)
class VenueOrder:
    """The exchange's word about an order: its state and the executions it
    reports (all of them, or only the new one: booked ones are passed over)."""

    order_id: str
    status: str  # new | partially_filled | filled | canceled | expired | rejected
    reject_reason: str = ""
    executions: tuple[VenueFill, ...] = ()


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


def lock_accounts_of(trade_ids: list[object]) -> None:
    """Lock the accounts of several trades at once, in account id order. A
    transaction that settles several trades calls this first: taking their locks
    one by one in its own order could deadlock with another such transaction (the
    leader's orders against its FIX session's bookings) taking them in another order."""
    if len(trade_ids) < 2:
        return
    list(
        Account.objects.select_for_update()
        .filter(
            pk__in=Subquery(Trade.objects.filter(id__in=trade_ids).values("account_id"))
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _lock(trade_id: object) -> tuple[Account, Trade]:
    """Account row lock, then trade row lock: the same order as placement and
    cancellation, so no deadlock."""
    account = Account.objects.select_for_update().get(
        pk=Subquery(Trade.objects.filter(id=trade_id).values("account_id"))
    )
    trade = Trade.objects.select_for_update().get(id=trade_id)
    return account, trade


def trade_apply_order(
    *, trade_id: object, order: VenueOrder, epoch: int | None = None
) -> Trade:
    """Book the exchange's state of the order: new executions first, then the status
    it implies, releasing the unused hold on a terminal state.

    Must run inside the caller's (fenced) transaction. Applying the same or an older
    order state again changes nothing. Returns the trade as booked.

    Writes each kind of row once however many executions arrive: the executions,
    their timeline lines, the trade, the balances and the ledger entries.
    """
    account, trade = _lock(trade_id)
    booked = {
        exec_id: (quantity, price)
        for exec_id, quantity, price in trade.fills.values_list(
            "exec_id", "quantity", "price"
        )
    }
    new = []
    for report in order.executions:
        if report.exec_id not in booked:
            booked[report.exec_id] = (report.quantity, report.price)
            new.append(report)
    ledger = LedgerWriter(account)
    changed: dict[str, object] = {}
    if new:
        value = sum((q * p for q, p in booked.values()), start=Decimal(0))
        value -= sum((r.quantity * r.price for r in new), start=Decimal(0))
        executions = Execution.objects.bulk_create(
            Execution(
                trade=trade,
                exec_id=report.exec_id,
                quantity=report.quantity,
                price=report.price,
                executed_at=report.executed_at,
            )
            for report in new
        )
        for report, execution in zip(new, executions, strict=True):
            value = _book_execution(ledger, trade, report, execution, value)
        TradeEvent.objects.bulk_create(
            _fill_event(trade, report, epoch) for report in new
        )
        changed.update(
            filled_quantity=trade.filled_quantity,
            average_price=trade.average_price,
            hold_remaining=trade.hold_remaining,
        )
    if order.order_id and trade.exchange_order_id != order.order_id:
        trade.exchange_order_id = order.order_id
        changed["exchange_order_id"] = order.order_id

    target = None if trade.status in TERMINAL else _target(trade, order)
    moved = False
    if target is not None:
        moved = _finish(
            ledger=ledger,
            trade=trade,
            to_status=target,
            epoch=epoch,
            reject_reason=order.reject_reason if target == Status.REJECTED else "",
            **changed,
        )
    elif trade.filled_quantity > 0 and trade.status == Status.SUBMITTED:
        moved = _move(trade, Status.PARTIALLY_FILLED, epoch, **changed)
    if changed and not moved:
        Trade.objects.filter(id=trade.id).update(updated_at=timezone.now(), **changed)
    ledger.flush()
    for report in new:
        logger.info(
            "fill applied trade=%s customer=%s exec=%s qty=%s price=%s epoch=%s",
            trade.id,
            account.customer_id,
            report.exec_id,
            report.quantity,
            report.price,
            epoch,
        )
    return trade


def _target(trade: Trade, order: VenueOrder) -> str | None:
    """The terminal status the exchange's order state puts the trade in, if any."""
    target = _TERMINAL_FROM_EXCHANGE.get(order.status)
    if target == Status.FILLED and trade.filled_quantity < trade.quantity:
        # The order says filled but not every execution has reached us yet: wait
        # for them (they come with the feed) rather than book money we have not seen.
        return None
    return target


def trade_finish_unsent(
    *, trade_id: object, to_status: str, reason: str = "", epoch: int | None = None
) -> Trade:
    """End a trade the exchange never took as an order: refused outright
    (``rejected``), or canceled before it was sent (``canceled``). Releases the
    hold. Must run inside the caller's (fenced) transaction."""
    account, trade = _lock(trade_id)
    if trade.status not in TERMINAL:
        ledger = LedgerWriter(account)
        _finish(
            ledger=ledger,
            trade=trade,
            to_status=to_status,
            epoch=epoch,
            reject_reason=reason if to_status == Status.REJECTED else "",
        )
        ledger.flush()
    return trade


def _move(trade: Trade, to_status: str, epoch: int | None, **fields: object) -> bool:
    """The conditional transition, with ``fields`` written in the same UPDATE; the
    in-memory trade follows when it happened."""
    moved = trade_transition(
        trade_id=trade.id,
        from_status=trade.status,
        to_status=to_status,
        epoch=epoch,
        **fields,
    )
    if moved:
        trade.status = to_status
        for name, value in fields.items():
            setattr(trade, name, value)
    return moved


def _book_execution(
    ledger: LedgerWriter,
    trade: Trade,
    report: VenueFill,
    execution: Execution,
    value_before: Decimal,
) -> Decimal:
    """Post one execution's money and shares and move the trade's fill totals (in
    memory; the caller writes the trade). Returns the filled value after it."""
    value_after = value_before + report.quantity * report.price
    # Cumulative rounding: the cents charged over all fills add up to the rounded
    # total value, never to a sum of per-fill roundings that could exceed the hold.
    notional = to_cents(value_after) - to_cents(value_before)
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
    ledger.post(
        kind=LedgerEntry.Kind.FILL, postings=postings, trade=trade, execution=execution
    )
    trade.filled_quantity += report.quantity
    trade.average_price = to_ticks(value_after / trade.filled_quantity)
    trade.hold_remaining -= from_hold
    return value_after


def _fill_event(trade: Trade, report: VenueFill, epoch: int | None) -> TradeEvent:
    return TradeEvent(
        trade=trade,
        kind=TradeEvent.Kind.FILL,
        status=trade.status,
        epoch=epoch,
        detail={
            "exec_id": report.exec_id,
            "quantity": str(report.quantity),
            "price": str(report.price),
            "executed_at": report.executed_at.isoformat(),
        },
    )


def _finish(
    *,
    ledger: LedgerWriter,
    trade: Trade,
    to_status: str,
    epoch: int | None,
    reject_reason: str = "",
    **fields: object,
) -> bool:
    """Move to a terminal status (writing ``fields`` with it) and post the release
    of whatever is still held; the caller flushes ``ledger``. False when the trade
    did not move (``fields`` are then not written)."""
    if not can_transition(trade.status, to_status):
        logger.error(
            "exchange state %s not reachable from %s trade=%s",
            to_status,
            trade.status,
            trade.id,
        )
        return False
    released = trade.hold_remaining
    fields["hold_remaining"] = Decimal(0)
    if reject_reason:
        fields["reject_reason"] = reject_reason[:200]
    if not _move(trade, to_status, epoch, **fields):
        return False
    if released:
        if trade.side == Trade.Side.BUY:
            posting = Posting(Bucket.RESERVED_CASH, -released)
        else:
            posting = Posting(Bucket.RESERVED_POSITION, -released, trade.symbol)
        ledger.post(kind=LedgerEntry.Kind.RELEASE, postings=[posting], trade=trade)
    logger.info(
        "trade %s trade=%s customer=%s filled=%s epoch=%s",
        to_status,
        trade.id,
        ledger.account.customer_id,
        trade.filled_quantity,
        epoch,
    )
    return True
