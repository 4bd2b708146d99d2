"""The trade status machine, enforced in one place: every transition is a conditional
UPDATE on the expected current status, so a replay is a no-op, and every transition
leaves a TradeEvent in the same transaction."""

from __future__ import annotations

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
CANCELABLE = frozenset(
    s for s, targets in ALLOWED.items() if Status.PENDING_CANCEL in targets
)

_TIMESTAMP_FIELD = {
    Status.SUBMITTED: "submitted_at",
    Status.FILLED: "filled_at",
    Status.CANCELED: "canceled_at",
    Status.EXPIRED: "expired_at",
    Status.REJECTED: "rejected_at",
}


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
            kind="status",
            status=to_status,
            epoch=epoch,
            detail={"from": from_status, **(detail or {})},
        )
    return updated == 1
