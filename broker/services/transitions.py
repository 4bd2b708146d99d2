"""The trade status machine, enforced in one place: every transition is a conditional
UPDATE on the expected current status, so a replay is a no-op, and every transition
leaves a TradeEvent in the same transaction. The sets every other module asks about
(terminal, open, cancelable, reconcilable, stuck) are defined here, from the
machine, once."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from broker.models import Trade, TradeEvent

Status = Trade.Status

ALLOWED: dict[str, frozenset[str]] = {
    Status.ACCEPTED: frozenset(
        {Status.SUBMITTED, Status.PENDING_CANCEL, Status.REJECTED}
    ),
    Status.SUBMITTED: frozenset(
        {
            Status.PARTIALLY_FILLED,
            Status.FILLED,
            Status.PENDING_CANCEL,
            Status.CANCELED,
            Status.EXPIRED,
            Status.REJECTED,
        }
    ),
    Status.PARTIALLY_FILLED: frozenset(
        {Status.FILLED, Status.PENDING_CANCEL, Status.CANCELED, Status.EXPIRED}
    ),
    # A cancel that loses the race to a fill ends filled; one the exchange
    # answers with an expiry or a rejection ends that way.
    Status.PENDING_CANCEL: frozenset(
        {Status.CANCELED, Status.FILLED, Status.EXPIRED, Status.REJECTED}
    ),
    Status.FILLED: frozenset(),
    Status.CANCELED: frozenset(),
    Status.REJECTED: frozenset(),
    Status.EXPIRED: frozenset(),
}
TERMINAL = frozenset(s for s, targets in ALLOWED.items() if not targets)
OPEN = frozenset(ALLOWED) - TERMINAL
CANCELABLE = frozenset(
    s for s, targets in ALLOWED.items() if Status.PENDING_CANCEL in targets
)
# Statuses only an order at the exchange can be in. A pending cancel may or may
# not have been sent: its submitted_at tells.
_SENT = frozenset({Status.SUBMITTED, Status.PARTIALLY_FILLED})

# Reconcilable: sent to the exchange and not finished, so worth asking the
# exchange about. A trade not yet sent is left to its placement event (the
# executor ignores a reconcile request for it). The same rule as a query:
RECONCILABLE = Q(status__in=_SENT) | Q(
    status=Status.PENDING_CANCEL, submitted_at__isnull=False
)


def is_reconcilable(trade: Trade) -> bool:
    """``RECONCILABLE`` for one trade in memory."""
    return trade.status in _SENT or (
        trade.status == Status.PENDING_CANCEL and trade.submitted_at is not None
    )


def stuck_after() -> timedelta:
    """How long an open trade may go without an update before it counts as stuck
    (``STUCK_TRADE_SECONDS``): the dashboard reports it, the job reconciles it."""
    return timedelta(seconds=settings.STUCK_TRADE_SECONDS)


def stuck(*, now: datetime | None = None, older_than: timedelta | None = None) -> Q:
    """Open trades not updated for ``older_than`` (default ``stuck_after()``)."""
    cutoff = (now or timezone.now()) - (older_than or stuck_after())
    return Q(status__in=OPEN, updated_at__lt=cutoff)


_TIMESTAMP_FIELD = {
    Status.SUBMITTED: "submitted_at",
    Status.FILLED: "filled_at",
    Status.CANCELED: "canceled_at",
    Status.EXPIRED: "expired_at",
    Status.REJECTED: "rejected_at",
}


def transition_fields(to_status: str) -> tuple[str, ...]:
    """The trade columns a move to ``to_status`` writes."""
    stamp = _TIMESTAMP_FIELD.get(to_status)
    return ("status", "updated_at", stamp) if stamp else ("status", "updated_at")


class IllegalTransition(Exception):
    pass


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in ALLOWED[from_status]


def trade_transition(
    *,
    trade_id: object,
    from_status: str,
    to_status: str,
    epoch: int | None = None,
    detail: dict | None = None,
    **fields: object,
) -> bool:
    """Move a trade from ``from_status`` to ``to_status`` (and set ``fields``) if it
    is still in ``from_status``, recording a TradeEvent. Returns False when it is
    not (a replay, or another writer got there first); raises IllegalTransition for
    an edge the machine does not have. Runs in the caller's transaction."""
    if not can_transition(from_status, to_status):
        raise IllegalTransition(f"{from_status} -> {to_status}")
    now = timezone.now()
    stamp = _TIMESTAMP_FIELD.get(to_status)
    if stamp:
        fields.setdefault(stamp, now)
    updated = Trade.objects.filter(id=trade_id, status=from_status).update(
        status=to_status, updated_at=now, **fields
    )
    if updated:
        TradeEvent.objects.create(
            trade_id=trade_id,
            kind=TradeEvent.Kind.STATUS,
            status=to_status,
            epoch=epoch,
            detail={"from": from_status, **(detail or {})},
        )
    return updated == 1


def trades_transition(
    *,
    trade_ids: list[object],
    from_status: str,
    to_status: str,
    epoch: int | None = None,
) -> set:
    """``trade_transition`` for several trades at once: one conditional UPDATE
    (returning the trades it moved) and one INSERT of their TradeEvents. Returns
    the ids of the trades moved; the others were no longer in ``from_status``."""
    if not can_transition(from_status, to_status):
        raise IllegalTransition(f"{from_status} -> {to_status}")
    if not trade_ids:
        return set()
    now = timezone.now()
    stamp = _TIMESTAMP_FIELD.get(to_status)
    quote = connection.ops.quote_name
    table = quote(Trade._meta.db_table)
    stamp_sql = f", {quote(stamp)} = %s" if stamp else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, updated_at = %s{stamp_sql} "
            "WHERE id = ANY(%s) AND status = %s RETURNING id",
            [to_status, now, *([now] if stamp else []), list(trade_ids), from_status],
        )
        moved = {row[0] for row in cursor.fetchall()}
    TradeEvent.objects.bulk_create(
        TradeEvent(
            trade_id=trade_id,
            kind=TradeEvent.Kind.STATUS,
            status=to_status,
            epoch=epoch,
            detail={"from": from_status},
        )
        for trade_id in trade_ids
        if trade_id in moved
    )
    return moved


def trade_transition_held(
    trade: Trade,
    to_status: str,
    *,
    epoch: int | None = None,
    now: datetime | None = None,
    detail: dict | None = None,
) -> TradeEvent:
    """The same move for a trade whose row the caller's transaction holds
    (read ``select_for_update()``), so its status in memory is its status: the
    trade changes in memory (status, the status's timestamp, ``updated_at``) and
    the caller writes it, with the returned TradeEvent, in its own statements.
    Raises IllegalTransition for an edge the machine does not have."""
    if not can_transition(trade.status, to_status):
        raise IllegalTransition(f"{trade.status} -> {to_status}")
    now = now or timezone.now()
    event = TradeEvent(
        trade_id=trade.id,
        kind=TradeEvent.Kind.STATUS,
        status=to_status,
        epoch=epoch,
        detail={"from": trade.status, **(detail or {})},
    )
    stamp = _TIMESTAMP_FIELD.get(to_status)
    if stamp:
        setattr(trade, stamp, now)
    trade.status = to_status
    trade.updated_at = now
    return event
