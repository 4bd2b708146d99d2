"""Customer onboarding: user, customer, funded account, API token."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from broker.models import Account, Customer, LedgerEntry
from broker.services.ledger import Posting, ledger_post
from broker.services.tokens import token_issue


def customer_create(
    *, username: str, cash: Decimal, password: str | None = None
) -> tuple[Customer, str]:
    """Create a customer whose account is funded with ``cash`` through a deposit
    ledger entry; returns the customer and a fresh API token. A ``password`` must
    pass AUTH_PASSWORD_VALIDATORS (django.core.exceptions.ValidationError, before
    anything is written); without one the customer can only use the token."""
    if cash < 0:
        raise ValueError("initial cash cannot be negative")
    if password is not None:
        validate_password(password, get_user_model()(username=username))
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=username)
        if password is not None:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save()
        customer = Customer.objects.create(user=user)
        account = Account.objects.create(customer=customer)
        account_deposit(account=account, amount=cash)
        token = token_issue(user=user)
    return customer, token


def account_deposit(*, account: Account, amount: Decimal) -> None:
    """Credit cash through a deposit entry. Takes the account row lock itself."""
    if amount < 0:
        raise ValueError("a deposit cannot be negative")
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        ledger_post(
            account=locked,
            kind=LedgerEntry.Kind.DEPOSIT,
            postings=[Posting(LedgerEntry.Bucket.CASH, amount)],
        )
        account.refresh_from_db()


def account_adjust(
    *, account: Account, amount: Decimal, reason: str, operator: str
) -> None:
    """An operations correction of cash (positive or negative), as a ledger entry
    that names the reason and the operator. Takes the account row lock; refused by
    the database if it would leave cash below zero or below what is reserved."""
    if not reason.strip():
        raise ValueError("an adjustment needs a reason")
    if amount == 0:
        raise ValueError("an adjustment cannot be zero")
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        ledger_post(
            account=locked,
            kind=LedgerEntry.Kind.ADJUSTMENT,
            postings=[Posting(LedgerEntry.Bucket.CASH, amount)],
            memo=f"{reason.strip()} (by {operator})"[:300],
        )
    account.refresh_from_db()
