"""The periodic jobs, as plain functions (``broker.tasks`` runs them on a schedule;
``manage.py audit`` runs the audit by hand). Each logs one structured line with its
counts.

None of them writes a trade: a trade that looks stuck is handed to its topic's
leader with ``trade.reconcile_requested``, and the leader asks the exchange and
catches the trade up. Every job is idempotent, so a redelivered or overlapping run
does no harm."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from broker.audit import ledger_discrepancies
from broker.events import EventType
from broker.models import (
    Account,
    FixJournal,
    IdempotencyRecord,
    OutboxEvent,
    Position,
    Trade,
    TradeEvent,
)
from broker.services.cancellation import trade_request_reconcile
from broker.services.transitions import (
    RECONCILABLE,
    TERMINAL,
    stuck,
    stuck_after,
)

logger = logging.getLogger(__name__)

Status = Trade.Status

# At most this many reconcile requests per run; the rest wait for the next run.
MAX_RECONCILES_PER_RUN = 1000
# First key of the per-trade advisory lock that serialises overlapping runs.
_RECONCILE_LOCK = 0x6A6F6273  # "jobs"

PRUNE_BATCH = 5000

AUDIT_CACHE_KEY = "ledger_audit:last"
# Violations kept in the cached audit result (the log and `manage.py audit` have
# them all).
AUDIT_CACHE_VIOLATIONS = 100
# Terminal trades with a hold left reported per audit.
AUDIT_TRADE_LIMIT = 1000


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


# --- Reconcile ------------------------------------------------------------------


def _recent_reconcile(*, since: datetime) -> QuerySet[TradeEvent]:
    return TradeEvent.objects.filter(
        kind=TradeEvent.Kind.OUTBOX,
        detail__event_type=EventType.TRADE_RECONCILE_REQUESTED,
        created_at__gte=since,
    )


def _request_reconciles(
    candidates: QuerySet[Trade], *, within: timedelta, requested_by: str
) -> tuple[int, int]:
    """Request a reconcile of each candidate that had none within ``within``.
    Returns (candidates seen, requests made).

    The check and the request run under a per-trade advisory lock, so two runs at
    once (an overlap, a redelivered task) request each trade once. The lock is not
    the trade row's: the leader's writes to the trade never wait for a job."""
    since = timezone.now() - within
    recent = _recent_reconcile(since=since).filter(trade=OuterRef("pk"))
    trades = list(
        candidates.filter(~Exists(recent))
        .select_related("account")
        .order_by("updated_at")[:MAX_RECONCILES_PER_RUN]
    )
    requested = 0
    for trade in trades:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    [_RECONCILE_LOCK, str(trade.id)],
                )
            if _recent_reconcile(since=since).filter(trade=trade).exists():
                continue  # another run got there first
            if not candidates.filter(pk=trade.pk).exists():
                continue  # the leader moved it on meanwhile
            trade_request_reconcile(trade=trade, requested_by=requested_by)
            requested += 1
    return len(trades), requested


def reconcile_stuck_trades(older_than: timedelta) -> int:
    """Request a reconcile for every open trade (submitted, partially filled or
    pending cancel, and sent) not updated for longer than ``older_than``, at most
    once per ``older_than`` per trade, except those flagged for review (a
    quarantined report: operations decide). Returns how many were requested."""
    started = time.monotonic()
    candidates, requested = _request_reconciles(
        # A trade flagged for review waits for operations: asking the venue
        # again would only quarantine its answer again.
        Trade.objects.filter(
            RECONCILABLE, stuck(older_than=older_than), review_reason=""
        ),
        within=older_than,
        requested_by="job:reconcile_stuck_trades",
    )
    logger.info(
        "job=reconcile_stuck_trades older_than_s=%d candidates=%d requested=%d "
        "duration_ms=%d",
        older_than.total_seconds(),
        candidates,
        requested,
        _ms_since(started),
    )
    return requested


def start_of_day(now: datetime | None = None) -> datetime:
    """Midnight UTC of ``now``'s day."""
    now = (now or timezone.now()).astimezone(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def expire_day_orders(
    *, within: timedelta | None = None, now: datetime | None = None
) -> int:
    """Safety net for day orders: the exchange expires them at the end of the day
    and says so in an ExecutionReport (expired). Any open day trade created before
    today (UTC) missed that report; request a reconcile, so the leader applies the
    exchange's ``expired``. At most once per ``within`` (default
    STUCK_TRADE_SECONDS) per trade. Returns how many were requested."""
    started = time.monotonic()
    within = within or stuck_after()
    today = start_of_day(now)
    overdue = Trade.objects.filter(
        RECONCILABLE,
        time_in_force=Trade.TimeInForce.DAY,
        created_at__lt=today,
        review_reason="",
    )
    candidates, requested = _request_reconciles(
        overdue, within=within, requested_by="job:expire_day_orders"
    )
    logger.info(
        "job=expire_day_orders created_before=%s candidates=%d requested=%d "
        "duration_ms=%d",
        today.isoformat(),
        candidates,
        requested,
        _ms_since(started),
    )
    return requested


# --- Pruning --------------------------------------------------------------------


def _delete_in_batches(table: str, where: str, params: list, batch: int) -> int:
    """DELETE the rows of ``table`` matching ``where``, ``batch`` rows per
    statement (each its own short transaction), until none is left."""
    sql = (
        # Table names and the condition come from this module, never from input.
        f"DELETE FROM {table} WHERE id IN ("
        f"SELECT id FROM {table} WHERE {where} "
        "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    )
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch])
            count = cursor.rowcount
        deleted += count
        if count < batch:
            return deleted


def prune_outbox(retention: timedelta, *, batch: int = PRUNE_BATCH) -> dict[str, int]:
    """Delete published outbox events created longer than ``retention`` ago (never
    an unpublished one), idempotency records older than IDEMPOTENCY_TTL_HOURS and
    FIX journal rows older than FIX_JOURNAL_RETENTION_HOURS (a resend reaching
    further back gets a GapFill). Returns the counts deleted."""
    started = time.monotonic()
    now = timezone.now()
    outbox = _delete_in_batches(
        OutboxEvent._meta.db_table,
        "published_at IS NOT NULL AND created_at < %s",
        [now - retention],
        batch,
    )
    idempotency = _delete_in_batches(
        IdempotencyRecord._meta.db_table,
        "created_at < %s",
        [now - timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)],
        batch,
    )
    fix_journal = _delete_in_batches(
        FixJournal._meta.db_table,
        "created_at < %s",
        [now - timedelta(hours=settings.FIX_JOURNAL_RETENTION_HOURS)],
        batch,
    )
    logger.info(
        "job=prune_outbox retention_h=%g outbox_deleted=%d "
        "idempotency_deleted=%d fix_journal_deleted=%d duration_ms=%d",
        retention.total_seconds() / 3600,
        outbox,
        idempotency,
        fix_journal,
        _ms_since(started),
    )
    return {"outbox": outbox, "idempotency": idempotency, "fix_journal": fix_journal}


# --- Ledger audit ---------------------------------------------------------------


def _held_by_terminal_trades() -> list[str]:
    trades = (
        Trade.objects.filter(status__in=TERMINAL, hold_remaining__gt=0)
        .order_by("updated_at")
        .values_list("id", "status", "hold_remaining", "account_id")
    )
    return [
        f"trade {trade_id} ({status}, account {account_id}): hold {hold} left on "
        "a terminal trade"
        for trade_id, status, hold, account_id in trades[:AUDIT_TRADE_LIMIT]
    ]


def _negative_balances() -> list[str]:
    """The CheckConstraints make these impossible; reported should one be dropped."""
    found = [
        f"account {pk}: negative balance, cash {cash} reserved {reserved}"
        for pk, cash, reserved in Account.objects.filter(
            Q(cash__lt=0) | Q(reserved_cash__lt=0)
        ).values_list("pk", "cash", "reserved_cash")
    ]
    found += [
        f"account {account_id} {symbol}: negative position, quantity {qty} "
        f"reserved {reserved}"
        for account_id, symbol, qty, reserved in Position.objects.filter(
            Q(quantity__lt=0) | Q(reserved_quantity__lt=0)
        ).values_list("account_id", "symbol", "quantity", "reserved_quantity")
    ]
    return found


def audit_ledger() -> list[str]:
    """Check the books: every balance equals the sum of its ledger entries, no
    terminal trade still holds cash or shares, no balance is negative.

    Logs ``LEDGER AUDIT ALERT`` at ERROR on any violation, and stores the result
    in the cache under ``ledger_audit:last`` (no expiry) for the admin
    (``last_audit()``). Returns the violations, empty when the books are clean."""
    started = time.monotonic()
    checked_at = timezone.now()
    violations = [
        *ledger_discrepancies(),
        *_held_by_terminal_trades(),
        *_negative_balances(),
    ]
    _store_audit(
        {
            "checked_at": checked_at,
            "ok": not violations,
            "count": len(violations),
            "violations": violations[:AUDIT_CACHE_VIOLATIONS],
        }
    )
    if violations:
        logger.error(
            "LEDGER AUDIT ALERT violations=%d first: %s",
            len(violations),
            " | ".join(violations[:5]),
        )
    logger.info(
        "job=audit_ledger ok=%s violations=%d duration_ms=%d",
        str(not violations).lower(),
        len(violations),
        _ms_since(started),
    )
    return violations


def _store_audit(result: dict) -> None:
    try:
        cache.set(AUDIT_CACHE_KEY, result, timeout=None)
    except Exception:  # the log line still carries the alert
        logger.warning("ledger audit result not stored in the cache", exc_info=True)


def last_audit() -> dict | None:
    """The latest ledger audit result, for the admin: ``{"checked_at": datetime,
    "ok": bool, "count": int, "violations": [str, ...]}`` (at most 100 violations
    listed, ``count`` has them all), or None when no audit ran yet or the cache is
    unreachable."""
    try:
        return cache.get(AUDIT_CACHE_KEY)
    except Exception:
        logger.warning("ledger audit result unreadable from the cache", exc_info=True)
        return None
