"""The only code that changes a balance: it appends ledger entries and applies the
same amounts to the balance columns, so balances always equal the sums of their
entries."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import F
from django.utils import timezone

from broker.models import Account, Execution, LedgerEntry, Position, Trade
from broker.money import CASH_ASSET
from broker.services.bulk import rows_update

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
    """Collects the postings of one transaction, then writes them with one statement
    per kind of row: one UPDATE of the accounts, one of the positions (plus an
    INSERT of first positions), one INSERT of every entry. A settlement that books
    the fills of many trades and releases the rest of their holds is a handful of
    statements instead of one set per step.

    Must be used inside a transaction holding ``select_for_update()`` on every
    account posted to: the account row lock serialises every balance change of the
    customer, positions included, so the balances read with the lock can be
    written back as absolute values. A flush that breaks a balance rule (negative
    cash, reserved above held) violates a CheckConstraint and aborts the whole
    transaction; the rules hold for the state the transaction commits.
    """

    def __init__(self, account: Account | None = None) -> None:
        self.account = account  # the default account of ``post``
        self._reset()

    def _reset(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._accounts: dict[int, Account] = {}
        # account id -> [cash delta, reserved cash delta]
        self._cash: dict[int, list[Decimal]] = defaultdict(
            lambda: [Decimal(0), Decimal(0)]
        )
        # (account id, symbol) -> [quantity delta, reserved quantity delta]
        self._positions: dict[tuple[int, str], list[Decimal]] = defaultdict(
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
        account: Account | None = None,
    ) -> None:
        """One entry per non-zero posting on ``account`` (default: the writer's),
        written at ``flush``."""
        account = account or self.account
        assert account is not None, "a posting needs an account"
        # One instance per account: the one whose balances flush writes back.
        account = self._accounts.setdefault(account.pk, account)
        for posting in postings:
            if posting.amount == 0:
                continue
            if posting.bucket == Bucket.CASH:
                self._cash[account.pk][0] += posting.amount
            elif posting.bucket == Bucket.RESERVED_CASH:
                self._cash[account.pk][1] += posting.amount
            elif posting.bucket == Bucket.POSITION:
                self._positions[(account.pk, posting.symbol)][0] += posting.amount
            else:
                self._positions[(account.pk, posting.symbol)][1] += posting.amount
            self._entries.append(
                LedgerEntry(
                    account=account,
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
        in-memory accounts carry the new balances."""
        if not self._entries:
            return
        now = timezone.now()
        moved = []
        for pk, (cash, reserved) in self._cash.items():
            if cash or reserved:
                account = self._accounts[pk]
                account.cash += cash
                account.reserved_cash += reserved
                account.updated_at = now
                moved.append(account)
        if len(moved) == 1:
            moved[0].save(update_fields=["cash", "reserved_cash", "updated_at"])
        elif moved:
            rows_update(moved, ["cash", "reserved_cash", "updated_at"])
        positions = {key: delta for key, delta in self._positions.items() if any(delta)}
        if len(positions) == 1:
            [((pk, symbol), (quantity, reserved))] = positions.items()
            _position_move(self._accounts[pk], symbol, quantity, reserved)
        elif positions:
            _positions_move(positions, now)
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


def _positions_move(
    deltas: dict[tuple[int, str], list[Decimal]], now: datetime
) -> None:
    """Move several positions by deltas: one read, one UPDATE of those that
    exist, one INSERT of the first shares of a symbol (the account locks mean no
    one else moves or creates them meanwhile)."""
    existing = {
        (p.account_id, p.symbol): p
        for p in Position.objects.filter(
            account_id__in={pk for pk, _ in deltas},
            symbol__in={symbol for _, symbol in deltas},
        )
        if (p.account_id, p.symbol) in deltas
    }
    for key, (quantity, reserved) in deltas.items():
        position = existing.get(key)
        if position is not None:
            position.quantity += quantity
            position.reserved_quantity += reserved
            position.updated_at = now
    if existing:
        rows_update(
            list(existing.values()), ["quantity", "reserved_quantity", "updated_at"]
        )
    Position.objects.bulk_create(
        Position(
            account_id=pk, symbol=symbol, quantity=quantity, reserved_quantity=reserved
        )
        for (pk, symbol), (quantity, reserved) in deltas.items()
        if (pk, symbol) not in existing
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
