"""Applying the exchange's word to a trade: fills move cash and shares, terminal
states release what is left of the hold. Replays are no-ops: executions are unique
by exec id and status changes are conditional. The exchange is the source of truth
for executions; these functions only ever catch the trade up with it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Subquery
from django.utils import timezone

from broker.models import Account, Execution, LedgerEntry, Trade, TradeEvent
from broker.money import to_cents, to_ticks
from broker.services.bulk import rows_update
from broker.services.ledger import LedgerWriter, Posting
from broker.services.transitions import (
    TERMINAL,
    can_transition,
    trade_transition_held,
    trades_transition,
    transition_fields,
)

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
    return bool(trades_mark_submitted(trade_ids=[trade_id], epoch=epoch))


def trades_mark_submitted(*, trade_ids: list[object], epoch: int | None = None) -> set:
    """``trade_mark_submitted`` for several trades in two statements; returns the
    ids of those that moved."""
    return trades_transition(
        trade_ids=trade_ids,
        from_status=Status.ACCEPTED,
        to_status=Status.SUBMITTED,
        epoch=epoch,
    )


class Settlement:
    """Settling several trades in one pass of the caller's (fenced) transaction:
    their accounts and trades are locked once, up front (accounts in id order,
    then trades: the order placement and cancellation take them in, so no
    deadlock); every step is applied in memory, where the next step sees it; and
    ``flush`` writes it all with one statement per kind of row — executions,
    trades, balances, ledger entries, timeline events — however many trades and
    reports the pass booked.

    The trades are read with their rows locked, so the status in memory is the
    status in the database until the transaction ends: the status moves are
    made in memory (``trade_transition_held``) and written by ``flush``.
    """

    def __init__(self, *, epoch: int | None = None) -> None:
        self.epoch = epoch
        self._trades: dict[object, Trade] = {}
        self._fills: dict[object, dict[str, tuple[Decimal, Decimal]]] = {}
        self._changed: dict[object, set[str]] = {}
        self._executions: list[Execution] = []
        self._events: list[TradeEvent] = []
        self._ledger = LedgerWriter()

    # -- reading --------------------------------------------------------------

    def load(self, trade_ids: Iterable[object]) -> set[object]:
        """Lock and read these trades and their accounts (unknown ids are left
        out); returns the ids found. Call before any step on them: a trade read
        later on its own (``trade``) takes its locks then."""
        wanted = {tid for tid in trade_ids if tid not in self._trades}
        if not wanted:
            return set()
        accounts = {
            account.pk: account
            for account in Account.objects.select_for_update()
            .filter(
                pk__in=Subquery(
                    Trade.objects.filter(id__in=wanted).values("account_id")
                )
            )
            .order_by("pk")
        }
        trades = Trade.objects.select_for_update().filter(id__in=wanted)
        self._adopt(list(trades), accounts)
        return {tid for tid in wanted if tid in self._trades}

    def trade(self, trade_id: object) -> Trade | None:
        """The trade as this pass has it (locked; read now if it was not)."""
        if trade_id not in self._trades:
            account = (
                Account.objects.select_for_update()
                .filter(
                    pk=Subquery(Trade.objects.filter(id=trade_id).values("account_id"))
                )
                .first()
            )
            if account is None:
                return None
            trade = Trade.objects.select_for_update().filter(id=trade_id).first()
            if trade is None:
                return None
            self._adopt([trade], {account.pk: account})
        return self._trades[trade_id]

    def has_fill(self, trade_id: object, exec_id: str) -> bool:
        return exec_id in self._fills.get(trade_id, {})

    def _adopt(self, trades: list[Trade], accounts: dict[int, Account]) -> None:
        """Keep ``trades`` with their (locked) accounts and the fills booked on
        them: read only for trades with a filled quantity, as every execution
        moves it in the transaction that books it."""
        filled = []
        for trade in trades:
            trade.account = accounts[trade.account_id]
            self._trades[trade.id] = trade
            self._fills[trade.id] = {}
            if trade.filled_quantity:
                filled.append(trade.id)
        if filled:
            for trade_id, exec_id, quantity, price in Execution.objects.filter(
                trade_id__in=filled
            ).values_list("trade_id", "exec_id", "quantity", "price"):
                self._fills[trade_id][exec_id] = (quantity, price)

    # -- steps, in memory -------------------------------------------------------

    def apply(self, trade_id: object, order: VenueOrder) -> Trade:
        """Book the exchange's state of the order: new executions first, then the
        status it implies, releasing the unused hold on a terminal state.
        Applying the same or an older order state again changes nothing."""
        trade = self.trade(trade_id)
        if trade is None:
            raise Trade.DoesNotExist(f"trade {trade_id}")
        booked = self._fills[trade.id]
        new = []
        for report in order.executions:
            if report.exec_id not in booked:
                new.append(report)
                booked[report.exec_id] = (report.quantity, report.price)
        if new:
            value = sum((q * p for q, p in booked.values()), start=Decimal(0))
            value -= sum((r.quantity * r.price for r in new), start=Decimal(0))
            for report in new:
                execution = Execution(
                    trade=trade,
                    exec_id=report.exec_id,
                    quantity=report.quantity,
                    price=report.price,
                    executed_at=report.executed_at,
                )
                self._executions.append(execution)
                value = _book_execution(self._ledger, trade, report, execution, value)
                self._events.append(_fill_event(trade, report, self.epoch))
            self._change(trade, "filled_quantity", "average_price", "hold_remaining")
        if order.order_id and trade.exchange_order_id != order.order_id:
            trade.exchange_order_id = order.order_id
            self._change(trade, "exchange_order_id")

        target = None if trade.status in TERMINAL else _target(trade, order)
        if target is not None:
            self._finish(
                trade,
                target,
                reject_reason=order.reject_reason if target == Status.REJECTED else "",
            )
        elif trade.filled_quantity > 0 and trade.status == Status.SUBMITTED:
            self._move(trade, Status.PARTIALLY_FILLED)
        for report in new:
            logger.info(
                "fill applied trade=%s customer=%s exec=%s qty=%s price=%s epoch=%s",
                trade.id,
                trade.account.customer_id,
                report.exec_id,
                report.quantity,
                report.price,
                self.epoch,
            )
        return trade

    def finish_unsent(
        self, trade_id: object, to_status: str, reason: str = ""
    ) -> Trade:
        """End a trade the exchange never took as an order: refused outright
        (``rejected``), or canceled before it was sent (``canceled``). Releases
        the hold."""
        trade = self.trade(trade_id)
        if trade is None:
            raise Trade.DoesNotExist(f"trade {trade_id}")
        if trade.status not in TERMINAL:
            self._finish(
                trade,
                to_status,
                reject_reason=reason if to_status == Status.REJECTED else "",
            )
        return trade

    def flag(self, trade: Trade, reason: str, detail: dict) -> None:
        """Flag the trade for review by operations (nothing booked), with a
        timeline line saying why."""
        trade.review_reason = reason[:300]
        self._change(trade, "review_reason")
        self.record(
            TradeEvent(
                trade=trade,
                kind=TradeEvent.Kind.QUARANTINE,
                status=trade.status,
                epoch=self.epoch,
                detail=detail,
            )
        )

    def record(self, event: TradeEvent) -> None:
        """A timeline line, written with the rest in order."""
        self._events.append(event)

    def _change(self, trade: Trade, *fields: str) -> None:
        self._changed.setdefault(trade.id, set()).update(fields)

    def _move(self, trade: Trade, to_status: str) -> None:
        self._events.append(trade_transition_held(trade, to_status, epoch=self.epoch))
        self._change(trade, *transition_fields(to_status))

    def _finish(self, trade: Trade, to_status: str, *, reject_reason: str = "") -> None:
        """Move to a terminal status and post the release of whatever is still
        held."""
        if not can_transition(trade.status, to_status):
            logger.error(
                "exchange state %s not reachable from %s trade=%s",
                to_status,
                trade.status,
                trade.id,
            )
            return
        released = trade.hold_remaining
        trade.hold_remaining = Decimal(0)
        self._change(trade, "hold_remaining")
        if reject_reason:
            trade.reject_reason = reject_reason[:200]
            self._change(trade, "reject_reason")
        self._move(trade, to_status)
        if released:
            if trade.side == Trade.Side.BUY:
                posting = Posting(Bucket.RESERVED_CASH, -released)
            else:
                posting = Posting(Bucket.RESERVED_POSITION, -released, trade.symbol)
            self._ledger.post(
                kind=LedgerEntry.Kind.RELEASE,
                postings=[posting],
                trade=trade,
                account=trade.account,
            )
        logger.info(
            "trade %s trade=%s customer=%s filled=%s epoch=%s",
            to_status,
            trade.id,
            trade.account.customer_id,
            trade.filled_quantity,
            self.epoch,
        )

    # -- writing --------------------------------------------------------------

    def flush(self) -> None:
        """Write everything the pass booked, one statement per kind of row, and
        start afresh (the trades stay loaded and locked)."""
        Execution.objects.bulk_create(self._executions)
        if self._changed:
            now = timezone.now()
            fields = {"updated_at"}.union(*self._changed.values())
            changed = [self._trades[tid] for tid in self._changed]
            for trade in changed:
                trade.updated_at = now
            rows_update(changed, sorted(fields))
        self._ledger.flush()
        TradeEvent.objects.bulk_create(self._events)
        self._executions, self._events, self._changed = [], [], {}


def trade_apply_order(
    *, trade_id: object, order: VenueOrder, epoch: int | None = None
) -> Trade:
    """``Settlement.apply`` for one trade, written at once. Must run inside the
    caller's (fenced) transaction. Returns the trade as booked."""
    settlement = Settlement(epoch=epoch)
    trade = settlement.apply(trade_id, order)
    settlement.flush()
    return trade


def trade_finish_unsent(
    *, trade_id: object, to_status: str, reason: str = "", epoch: int | None = None
) -> Trade:
    """``Settlement.finish_unsent`` for one trade, written at once. Must run
    inside the caller's (fenced) transaction."""
    settlement = Settlement(epoch=epoch)
    trade = settlement.finish_unsent(trade_id, to_status, reason)
    settlement.flush()
    return trade


def _target(trade: Trade, order: VenueOrder) -> str | None:
    """The terminal status the exchange's order state puts the trade in, if any."""
    target = _TERMINAL_FROM_EXCHANGE.get(order.status)
    if target == Status.FILLED and trade.filled_quantity < trade.quantity:
        # The order says filled but not every execution has reached us yet: wait
        # for them (they come with the feed) rather than book money we have not seen.
        return None
    return target


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
        kind=LedgerEntry.Kind.FILL,
        postings=postings,
        trade=trade,
        execution=execution,
        account=trade.account,
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
