"""API tokens: issued once in clear, stored as a hash, revocable one by one or all
at once, expiring after ``TOKEN_TTL_HOURS`` unused (sliding), at most
``TOKEN_MAX_PER_USER`` live per user. The rule of what is live is defined here
once; the authentication class, the token endpoints and the password-change hook
all go through this module."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from broker.models import ApiToken

# A used token's ``last_used_at`` is written at most this often: the request hot
# path reads the token on every call but writes it about once a minute. The
# expiry therefore slides in steps of up to a minute.
TOUCH_INTERVAL = timedelta(minutes=1)
PREFIX_LENGTH = 8


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ttl() -> timedelta:
    return timedelta(hours=settings.TOKEN_TTL_HOURS)


def _live(now: datetime) -> Q:
    return Q(revoked_at__isnull=True, last_used_at__gt=now - _ttl())


def token_expires_at(record: ApiToken) -> datetime:
    return record.last_used_at + _ttl()


def token_issue(*, user: AbstractBaseUser) -> str:
    """Create a token for ``user`` and return it in clear (the only time it is).

    Takes the user's row lock (``select_for_update``) so concurrent logins of one
    user are counted one after the other: beyond ``TOKEN_MAX_PER_USER`` live
    tokens, the least recently used are revoked in the same transaction (the new
    one is the most recently used)."""
    with transaction.atomic():
        get_user_model().objects.select_for_update().filter(pk=user.pk).exists()
        # The prefix names the token in the API: unique per user (a collision
        # has odds of 1 in 2**48 per pair; the constraint is the backstop).
        while True:
            token = secrets.token_urlsafe(32)
            prefix = token[:PREFIX_LENGTH]
            if not ApiToken.objects.filter(user=user, prefix=prefix).exists():
                break
        ApiToken.objects.create(user=user, key_hash=token_hash(token), prefix=prefix)
        now = timezone.now()
        surplus = list(
            ApiToken.objects.filter(_live(now), user=user)
            .order_by("-last_used_at", "-created_at", "-pk")
            .values_list("pk", flat=True)[settings.TOKEN_MAX_PER_USER :]
        )
        if surplus:
            ApiToken.objects.filter(pk__in=surplus, revoked_at__isnull=True).update(
                revoked_at=now
            )
    return token


def token_use(*, token: str) -> ApiToken | None:
    """The live token ``token`` with its user and customer, or None (unknown,
    revoked or expired). Slides its expiry: ``last_used_at`` is moved to now when
    it is older than ``TOUCH_INTERVAL``, by a conditional UPDATE, so concurrent
    requests write it once."""
    now = timezone.now()
    record = (
        # The customer too: every customer endpoint needs it next.
        ApiToken.objects.select_related("user", "user__customer")
        .filter(_live(now), key_hash=token_hash(token))
        .first()
    )
    if record is None:
        return None
    if now - record.last_used_at >= TOUCH_INTERVAL:
        ApiToken.objects.filter(pk=record.pk, last_used_at=record.last_used_at).update(
            last_used_at=now
        )
        record.last_used_at = now
    return record


def token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """The user's live tokens, most recently used first."""
    return ApiToken.objects.filter(_live(timezone.now()), user=user).order_by(
        "-last_used_at", "-created_at", "-pk"
    )


def token_revoke(*, token: str) -> bool:
    """Revoke a token; False if it was unknown or already revoked."""
    return (
        ApiToken.objects.filter(
            key_hash=token_hash(token), revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        == 1
    )


def token_revoke_prefix(*, user: AbstractBaseUser, prefix: str) -> bool:
    """Revoke the user's live token named by ``prefix``; False if there is none
    (another user's token is never touched)."""
    now = timezone.now()
    return (
        ApiToken.objects.filter(_live(now), user=user, prefix=prefix).update(
            revoked_at=now
        )
        == 1
    )


def token_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revoke every token of the user; returns how many were still unrevoked."""
    return ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
