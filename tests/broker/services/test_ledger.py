from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from broker.audit import ledger_discrepancies
from broker.models import Account, LedgerEntry
from broker.services.ledger import Posting, ledger_post
from tests.factories import make_customer


@pytest.mark.django_db
def test_ledger_entries_cannot_be_updated_or_deleted():
    customer, _ = make_customer("100.00")
    entry = LedgerEntry.objects.get(account__customer=customer)
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("1000000"))
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).delete()


@pytest.mark.django_db
def test_database_refuses_reserving_more_cash_than_held():
    customer, _ = make_customer("100.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        account = Account.objects.select_for_update().get(customer=customer)
        ledger_post(
            account=account,
            kind=LedgerEntry.Kind.HOLD,
            postings=[Posting(LedgerEntry.Bucket.RESERVED_CASH, Decimal("100.01"))],
        )
    account = Account.objects.get(customer=customer)
    assert account.reserved_cash == 0
    assert ledger_discrepancies(account_ids=[account.pk]) == []


@pytest.mark.django_db
def test_audit_reports_a_balance_that_differs_from_its_entries():
    customer, _ = make_customer("100.00")
    account = Account.objects.get(customer=customer)
    assert ledger_discrepancies(account_ids=[account.pk]) == []
    Account.objects.filter(pk=account.pk).update(cash=Decimal("150.00"))
    [problem] = ledger_discrepancies(account_ids=[account.pk])
    assert "cash 150.00 vs ledger 100.00" in problem
