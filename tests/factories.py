"""Test data through the real services, so every balance has its ledger entries."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal

from broker.models import Customer, LedgerEntry, Position, Trade
from broker.services.customers import customer_create
from broker.services.ledger import Posting, ledger_post

_sequence = itertools.count()


def make_customer(cash: str | Decimal = "10000.00") -> tuple[Customer, str]:
    """A customer with a funded account and an API token; usernames never clash, so
    tests that commit (live_db) can share the database."""
    username = f"cust-{uuid.uuid4().hex[:10]}-{next(_sequence)}"
    return customer_create(username=username, cash=Decimal(cash))


def give_shares(customer: Customer, symbol: str, quantity: str | Decimal) -> Position:
    """Credit shares as a ledger entry (as a transfer-in would)."""
    from django.db import transaction

    from broker.models import Account

    with transaction.atomic():
        account = Account.objects.select_for_update().get(customer=customer)
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.DEPOSIT,
            postings=[Posting(LedgerEntry.Bucket.POSITION, Decimal(quantity), symbol)],
        )
    return Position.objects.get(account__customer=customer, symbol=symbol)


def fixed_price(price: str) -> callable:
    """A price source for unit tests: every listed symbol at ``price``."""

    def source(symbol: str) -> Decimal | None:
        return None if symbol == "NOPE" else Decimal(price)

    return source


def trades_of(customer: Customer):
    return Trade.objects.filter(account__customer=customer)
