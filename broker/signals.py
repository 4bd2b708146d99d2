"""A password change revokes every API token of the user, whichever path made it:
the admin's password form, ``manage.py changepassword``, ``set_password()`` +
``save()``, or a hash assigned directly. Hooked on the user model's saves, so no
path can forget it (``QuerySet.update()`` of a password bypasses it, as it
bypasses every model hook; nothing in the project does that)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import (
    get_hasher,
    identify_hasher,
    is_password_usable,
)
from django.contrib.auth.models import AbstractBaseUser
from django.db.models.signals import post_save, pre_save

from broker.services.tokens import token_revoke_all


def _is_hash_upgrade(user: AbstractBaseUser, old_hash: str) -> bool:
    """``check_password()`` re-hashes a password whose hash is outdated (another
    algorithm, fewer iterations) and saves it: the same password, not a change.
    It marks that save by clearing ``_password``, which ``set_password()`` sets;
    what is left to tell it from a hash assigned directly is that the old hash was
    one the preferred hasher would upgrade (Django's own test of when to)."""
    if getattr(user, "_password", None) is not None:
        return False
    if not is_password_usable(user.password):  # disabled: a change
        return False
    try:
        old_hasher = identify_hasher(old_hash)
    except ValueError:  # unusable ("!...") or unknown: nothing to upgrade
        return False
    preferred = get_hasher("default")
    return old_hasher.algorithm != preferred.algorithm or preferred.must_update(
        old_hash
    )


def password_before_save(sender, instance, raw, update_fields, **kwargs) -> None:
    """pre_save: note whether this save changes the stored password hash (one
    SELECT, only for saves that may write the password)."""
    instance._broker_password_changed = False
    if raw or instance.pk is None:
        return
    if update_fields is not None and "password" not in update_fields:
        return
    old_hash = (
        sender._default_manager.filter(pk=instance.pk)
        .values_list("password", flat=True)
        .first()
    )
    if old_hash is None or old_hash == instance.password:
        return
    instance._broker_password_changed = not _is_hash_upgrade(instance, old_hash)


def password_after_save(sender, instance, created, raw, **kwargs) -> None:
    """post_save: revoke the tokens, in the saving transaction when there is one
    (a rolled-back password change revokes nothing)."""
    if getattr(instance, "_broker_password_changed", False):
        instance._broker_password_changed = False
        token_revoke_all(user=instance)


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(
        password_before_save, sender=user_model, dispatch_uid="broker.password_pre"
    )
    post_save.connect(
        password_after_save, sender=user_model, dispatch_uid="broker.password_post"
    )
