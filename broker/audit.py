"""Ledger audit: every balance column must equal the sum of its ledger entries, and
no balance may be negative. Read-only; returns the discrepancies it finds."""

from __future__ import annotations

from django.db import connection

_CASH_MISMATCHES = """
SELECT a.id, a.cash, a.reserved_cash,
       COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'cash'), 0),
       COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'reserved_cash'), 0)
  FROM broker_account a
  LEFT JOIN broker_ledgerentry e
         ON e.account_id = a.id AND e.bucket IN ('cash', 'reserved_cash')
 WHERE %(all)s OR a.id = ANY(%(ids)s)
 GROUP BY a.id
HAVING a.cash <> COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'cash'), 0)
    OR a.reserved_cash
       <> COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'reserved_cash'), 0)
    OR a.cash < 0 OR a.reserved_cash < 0
"""

_POSITION_MISMATCHES = """
SELECT p.account_id, p.symbol, p.quantity, p.reserved_quantity,
       COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'position'), 0),
       COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'reserved_position'), 0)
  FROM broker_position p
  LEFT JOIN broker_ledgerentry e
         ON e.account_id = p.account_id AND e.asset = p.symbol
        AND e.bucket IN ('position', 'reserved_position')
 WHERE %(all)s OR p.account_id = ANY(%(ids)s)
 GROUP BY p.id
HAVING p.quantity <> COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'position'), 0)
    OR p.reserved_quantity
       <> COALESCE(SUM(e.amount) FILTER (WHERE e.bucket = 'reserved_position'), 0)
    OR p.quantity < 0 OR p.reserved_quantity < 0
"""


def ledger_discrepancies(*, account_ids: list[int] | None = None) -> list[str]:
    """Human-readable discrepancies, empty when the books balance. ``account_ids``
    limits the audit; None audits every account."""
    params = {"all": account_ids is None, "ids": account_ids or []}
    found: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(_CASH_MISMATCHES, params)
        for account_id, cash, reserved, cash_sum, reserved_sum in cursor.fetchall():
            found.append(
                f"account {account_id}: cash {cash} vs ledger {cash_sum}, "
                f"reserved {reserved} vs ledger {reserved_sum}"
            )
        cursor.execute(_POSITION_MISMATCHES, params)
        for (
            account_id,
            symbol,
            qty,
            reserved,
            qty_sum,
            reserved_sum,
        ) in cursor.fetchall():
            found.append(
                f"account {account_id} {symbol}: quantity {qty} vs ledger {qty_sum}, "
                f"reserved {reserved} vs ledger {reserved_sum}"
            )
    return found
