"""The trade status machine, enforced in one place: every transition is a conditional
UPDATE on the expected current status, so a replay is a no-op."""

from __future__ import annotations

from django.utils import timezone

from broker.models import Trade

Status = Trade.Status

ALLOWED: dict[str, frozenset[str]] = {
    Status.ACCEPTED: frozenset({Status.SUBMITTED, Status.REJECTED}),
    Status.SUBMITTED: frozenset({Status.FILLED, Status.REJECTED}),
    Status.FILLED: frozenset(),
    Status.REJECTED: frozenset(),
}
TERMINAL = frozenset(s for s, targets in ALLOWED.items() if not targets)


class IllegalTransition(Exception):
    pass


def trade_transition(
    *, trade_id: object, from_status: str, to_status: str, **fields: object
) -> bool:
    """Move a trade from ``from_status`` to ``to_status`` (and set ``fields``) if it
    is still in ``from_status``. Returns False when it is not (a replay, or another
    writer got there first); raises IllegalTransition for an edge the machine does
    not have."""
    if to_status not in ALLOWED[from_status]:
        raise IllegalTransition(f"{from_status} -> {to_status}")
    now = timezone.now()
    if to_status == Status.SUBMITTED:
        fields.setdefault("submitted_at", now)
    if to_status == Status.FILLED:
        fields.setdefault("filled_at", now)
    updated = Trade.objects.filter(id=trade_id, status=from_status).update(
        status=to_status, updated_at=now, **fields
    )
    return updated == 1
