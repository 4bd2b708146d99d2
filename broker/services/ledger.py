"""The only code that changes a balance: it appends ledger entries and applies the
same amounts to the balance columns, so balances always equal the sums of their
entries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from broker.models import CASH_ASSET, Account, Execution, LedgerEntry, Position, Trade

Bucket = LedgerEntry.Bucket


@dataclass(frozen=True)
class Posting:
    bucket: str
    amount: Decimal
    symbol: str = ""  # position buckets only

    @property
    def asset(self) -> str:
        return self.symbol or CASH_ASSET


def ledger_post(
    *,
    account: Account,
    kind: str,
    postings: list[Posting],
    trade: Trade | None = None,
    execution: Execution | None = None,
    memo: str = "",
) -> None:
    """Append one entry per posting and move the balances by the same amounts.

    Must run inside a transaction holding ``select_for_update()`` on ``account``:
    the account row lock serialises every balance change of the customer, positions
    included. A posting that breaks a balance rule (negative cash, reserved above
    held) violates a CheckConstraint and aborts the whole transaction.
    """
    postings = [p for p in postings if p.amount != 0]
    if not postings:
        return
    positions: dict[str, Position] = {}
    for posting in postings:
        if posting.bucket == Bucket.CASH:
            account.cash += posting.amount
        elif posting.bucket == Bucket.RESERVED_CASH:
            account.reserved_cash += posting.amount
        else:
            position = positions.get(posting.symbol)
            if position is None:
                position, _ = Position.objects.get_or_create(
                    account=account, symbol=posting.symbol
                )
                positions[posting.symbol] = position
            if posting.bucket == Bucket.POSITION:
                position.quantity += posting.amount
            else:
                position.reserved_quantity += posting.amount
    if any(p.bucket in (Bucket.CASH, Bucket.RESERVED_CASH) for p in postings):
        account.save(update_fields=["cash", "reserved_cash", "updated_at"])
    for position in positions.values():
        position.save(update_fields=["quantity", "reserved_quantity", "updated_at"])
    LedgerEntry.objects.bulk_create(
        LedgerEntry(
            account=account,
            trade=trade,
            execution=execution,
            kind=kind,
            bucket=p.bucket,
            asset=p.asset,
            amount=p.amount,
            memo=memo,
        )
        for p in postings
    )
