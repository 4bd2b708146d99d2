"""API tokens: issued once in clear, stored as a hash, revocable one by one."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from broker.models import ApiToken


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_issue(*, user: AbstractBaseUser) -> str:
    """Create a token for ``user`` and return it in clear (the only time it is)."""
    token = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, key_hash=token_hash(token), prefix=token[:8])
    return token


def token_revoke(*, token: str) -> bool:
    """Revoke a token; False if it was unknown or already revoked."""
    return (
        ApiToken.objects.filter(
            key_hash=token_hash(token), revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        == 1
    )
