"""The only code that changes a balance: it appends ledger entries and applies the
same amounts to the balance columns, so balances always equal the sums of their
entries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F
from django.utils import timezone

from broker.models import Account, Execution, LedgerEntry, Position, Trade
from broker.money import CASH_ASSET

Bucket = LedgerEntry.Bucket


@dataclass(frozen=True)
class Posting:
    bucket: str
    amount: Decimal
    symbol: str = ""  # position buckets only

    @property
    def asset(self) -> str:
        return self.symbol or CASH_ASSET


class LedgerWriter:
    """Collects the postings of one transaction for one account, then writes them
    with one statement per kind of row: one UPDATE of the account, one per position
    touched, one INSERT of every entry. A settlement that books a fill and releases
    the rest of its hold is three statements instead of one set per step.

    Must be used inside a transaction holding ``select_for_update()`` on the
    account: the account row lock serialises every balance change of the customer,
    positions included. A flush that breaks a balance rule (negative cash, reserved
    above held) violates a CheckConstraint and aborts the whole transaction; the
    rules hold for the state the transaction commits.
    """

    def __init__(self, account: Account) -> None:
        self.account = account
        self._reset()

    def _reset(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._cash = Decimal(0)
        self._reserved_cash = Decimal(0)
        # symbol -> [quantity delta, reserved quantity delta]
        self._positions: dict[str, list[Decimal]] = defaultdict(
            lambda: [Decimal(0), Decimal(0)]
        )

    def post(
        self,
        *,
        kind: str,
        postings: list[Posting],
        trade: Trade | None = None,
        execution: Execution | None = None,
        memo: str = "",
    ) -> None:
        """One entry per non-zero posting, written at ``flush``."""
        for posting in postings:
            if posting.amount == 0:
                continue
            if posting.bucket == Bucket.CASH:
                self._cash += posting.amount
            elif posting.bucket == Bucket.RESERVED_CASH:
                self._reserved_cash += posting.amount
            elif posting.bucket == Bucket.POSITION:
                self._positions[posting.symbol][0] += posting.amount
            else:
                self._positions[posting.symbol][1] += posting.amount
            self._entries.append(
                LedgerEntry(
                    account=self.account,
                    trade=trade,
                    execution=execution,
                    kind=kind,
                    bucket=posting.bucket,
                    asset=posting.asset,
                    amount=posting.amount,
                    memo=memo,
                )
            )

    def flush(self) -> None:
        """Write what was posted (nothing when nothing was) and start afresh. The
        in-memory account carries the new balances."""
        if not self._entries:
            return
        account = self.account
        if self._cash or self._reserved_cash:
            account.cash += self._cash
            account.reserved_cash += self._reserved_cash
            account.save(update_fields=["cash", "reserved_cash", "updated_at"])
        for symbol, (quantity, reserved) in self._positions.items():
            if quantity or reserved:
                _position_move(account, symbol, quantity, reserved)
        LedgerEntry.objects.bulk_create(self._entries)
        self._reset()


def _position_move(
    account: Account, symbol: str, quantity: Decimal, reserved: Decimal
) -> None:
    """Move a position by deltas: one UPDATE, or an INSERT for the first shares of a
    symbol (the account lock means no one else creates it meanwhile)."""
    now = timezone.now()
    moved = Position.objects.filter(account=account, symbol=symbol).update(
        quantity=F("quantity") + quantity,
        reserved_quantity=F("reserved_quantity") + reserved,
        updated_at=now,
    )
    if not moved:
        Position.objects.create(
            account=account,
            symbol=symbol,
            quantity=quantity,
            reserved_quantity=reserved,
        )


def ledger_post(
    *,
    account: Account,
    kind: str,
    postings: list[Posting],
    trade: Trade | None = None,
    execution: Execution | None = None,
    memo: str = "",
) -> None:
    """Append one entry per posting and move the balances by the same amounts, at
    once. Same contract as ``LedgerWriter``."""
    writer = LedgerWriter(account)
    writer.post(
        kind=kind, postings=postings, trade=trade, execution=execution, memo=memo
    )
    writer.flush()
