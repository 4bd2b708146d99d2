"""Reads. Every selector takes the customer and filters by it: no query here can
return another customer's rows."""

from __future__ import annotations

from django.db.models import QuerySet

from broker.models import Account, Customer, Position, Trade


def trade_get(*, customer: Customer, trade_id: object) -> Trade | None:
    return (
        Trade.objects.filter(account__customer=customer, id=trade_id)
        .prefetch_related("fills")
        .first()
    )


def account_get(*, customer: Customer) -> Account:
    return Account.objects.get(customer=customer)


def position_list(*, customer: Customer) -> QuerySet[Position]:
    return Position.objects.filter(account__customer=customer).order_by("symbol")
