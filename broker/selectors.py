"""Reads. Every selector takes the customer and filters by it: no query here can
return another customer's rows."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from broker.models import Account, Customer, LedgerEntry, Position, Trade


def trade_get(*, customer: Customer, trade_id: object) -> Trade | None:
    return (
        Trade.objects.filter(account__customer=customer, id=trade_id)
        .prefetch_related("fills")
        .first()
    )


def trade_list(
    *,
    customer: Customer,
    statuses: list[str] | None = None,
    symbol: str | None = None,
    side: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Trade]:
    trades = Trade.objects.filter(account__customer=customer)
    if statuses:
        trades = trades.filter(status__in=statuses)
    if symbol:
        trades = trades.filter(symbol=symbol)
    if side:
        trades = trades.filter(side=side)
    if created_after:
        trades = trades.filter(created_at__gt=created_after)
    if created_before:
        trades = trades.filter(created_at__lt=created_before)
    return trades


def account_get(*, customer: Customer) -> Account:
    return Account.objects.get(customer=customer)


def position_list(*, customer: Customer) -> QuerySet[Position]:
    return Position.objects.filter(account__customer=customer, quantity__gt=0).order_by(
        "symbol"
    )


def position_get(*, customer: Customer, symbol: str) -> Position | None:
    return position_list(customer=customer).filter(symbol=symbol).first()


def activity_list(*, customer: Customer) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(account__customer=customer)
