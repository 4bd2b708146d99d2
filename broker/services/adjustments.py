"""Balance adjustments by operations, with four eyes above a limit.

An adjustment of at most ``ADMIN_ADJUSTMENT_APPROVAL_LIMIT`` (either sign) posts at
once (``account_adjust``). A larger one only becomes a pending
``BalanceAdjustmentRequest``; a different staff member approves it, which posts the
ledger entry with both names on its memo, or rejects it, which posts nothing.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from broker.errors import AdjustmentAlreadyDecided, FourEyesRequired
from broker.models import Account, BalanceAdjustmentRequest
from broker.services.customers import account_adjust

logger = logging.getLogger(__name__)

Status = BalanceAdjustmentRequest.Status


def adjustment_needs_approval(amount: Decimal) -> bool:
    """True if an adjustment of ``amount`` needs a second staff member."""
    return abs(amount) > settings.ADMIN_ADJUSTMENT_APPROVAL_LIMIT


def adjustment_request_create(
    *, account: Account, amount: Decimal, reason: str, requested_by: AbstractBaseUser
) -> BalanceAdjustmentRequest:
    """Record an adjustment for another staff member to decide; moves nothing."""
    if not reason.strip():
        raise ValueError("an adjustment needs a reason")
    if amount == 0:
        raise ValueError("an adjustment cannot be zero")
    request = BalanceAdjustmentRequest.objects.create(
        account=account, amount=amount, reason=reason.strip(), requested_by=requested_by
    )
    logger.info(
        "adjustment requested request=%s account=%s amount=%s by=%s",
        request.pk,
        account.pk,
        amount,
        requested_by.get_username(),
    )
    return request


def _decide(
    *, request_id: int, decider: AbstractBaseUser, status: str
) -> BalanceAdjustmentRequest:
    """pending -> ``status`` by ``decider``, as one conditional UPDATE: of two
    concurrent decisions one changes the row and the other finds it decided. Call
    inside a transaction; the row stays locked until it ends."""
    decided = (
        BalanceAdjustmentRequest.objects.filter(pk=request_id, status=Status.PENDING)
        .exclude(requested_by=decider)
        .update(status=status, decided_by=decider, decided_at=timezone.now())
    )
    request = BalanceAdjustmentRequest.objects.select_related(
        "account", "requested_by", "decided_by"
    ).get(pk=request_id)
    if decided:
        return request
    if request.status != Status.PENDING:
        raise AdjustmentAlreadyDecided(
            f"adjustment #{request.pk} was {request.status} already by "
            f"{request.decided_by.get_username()}"
        )
    raise FourEyesRequired(
        f"adjustment #{request.pk} was requested by "
        f"{decider.get_username()}: another staff member must decide it"
    )


def adjustment_request_approve(
    *, request_id: int, approver: AbstractBaseUser
) -> BalanceAdjustmentRequest:
    """Approve a pending request and post its ledger entry (``account_adjust``,
    which takes the account row lock), both in one transaction: if the database
    refuses the entry (cash below zero or below the reserved cash: IntegrityError)
    the request stays pending. Raises FourEyesRequired for the requester's own,
    AdjustmentAlreadyDecided when decided already (nothing is posted twice)."""
    with transaction.atomic():
        request = _decide(
            request_id=request_id, decider=approver, status=Status.APPROVED
        )
        requester = request.requested_by.get_username()
        account_adjust(
            account=request.account,
            amount=request.amount,
            reason=request.reason,
            operator=(
                f"{requester}, approved by {approver.get_username()}; "
                f"request #{request.pk}"
            ),
        )
    logger.info(
        "adjustment approved request=%s account=%s amount=%s requested_by=%s "
        "approved_by=%s",
        request.pk,
        request.account_id,
        request.amount,
        requester,
        approver.get_username(),
    )
    return request


def adjustment_request_reject(
    *, request_id: int, rejecter: AbstractBaseUser
) -> BalanceAdjustmentRequest:
    """Reject a pending request: nothing is posted. Same refusals as approve."""
    with transaction.atomic():
        request = _decide(
            request_id=request_id, decider=rejecter, status=Status.REJECTED
        )
    logger.info(
        "adjustment rejected request=%s account=%s rejected_by=%s",
        request.pk,
        request.account_id,
        rejecter.get_username(),
    )
    return request
