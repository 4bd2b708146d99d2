"""Read-only selectors for the operations admin: the dashboard numbers, outbox lag,
stuck trades, a trade's merged timeline and the live view of the executors'
ZooKeeper elections. Nothing here writes; changes go through ``broker.services``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from broker.jobs import last_audit
from broker.models import (
    ConsumerOffset,
    Execution,
    FixJournal,
    FixSession,
    LedgerEntry,
    OutboxEvent,
    TopicLeader,
    Trade,
    TradeEvent,
)
from broker.services.transitions import (
    stuck,
    stuck_after,
)
from broker.topics import all_topics

logger = logging.getLogger(__name__)

# Window of the dashboard's "trades per status" counts (by creation time).
RECENT_WINDOW = timedelta(hours=1)
# Connect and session timeout of the admin's short-lived ZooKeeper client.
ZOOKEEPER_TIMEOUT = 2.0

Status = Trade.Status


# --- Trades --------------------------------------------------------------------


def stuck_trades(*, now: datetime | None = None) -> QuerySet[Trade]:
    """Open trades nobody has touched for longer than ``stuck_after()``."""
    return Trade.objects.filter(stuck(now=now))


def trades_per_status(*, since: datetime) -> dict[str, int]:
    """Trades created since ``since`` by current status, in status-machine order;
    statuses without trades are left out."""
    counts = dict(
        Trade.objects.filter(created_at__gte=since)
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {status: counts[status] for status in Status.values if counts.get(status)}


# --- Outbox --------------------------------------------------------------------


def outbox_lag(*, now: datetime | None = None) -> dict:
    """Unpublished outbox rows: how many, and how old the oldest is."""
    now = now or timezone.now()
    row = OutboxEvent.objects.filter(published_at__isnull=True).aggregate(
        count=Count("id"), oldest=Min("created_at")
    )
    oldest = row["oldest"]
    return {
        "unpublished": row["count"],
        "oldest_created_at": oldest,
        "oldest_age_seconds": (
            max(0, int((now - oldest).total_seconds())) if oldest else None
        ),
    }


# --- Dashboard -----------------------------------------------------------------


def dashboard(*, now: datetime | None = None) -> dict:
    """The numbers of the admin index's status line."""
    now = now or timezone.now()
    per_status = trades_per_status(since=now - RECENT_WINDOW)
    lag = outbox_lag(now=now)
    return {
        "now": now,
        "trades_last_hour": per_status,
        "trades_last_hour_total": sum(per_status.values()),
        "outbox_unpublished": lag["unpublished"],
        "outbox_oldest_age_seconds": lag["oldest_age_seconds"],
        "stuck_trades": stuck_trades(now=now).count(),
        "stuck_after_seconds": int(stuck_after().total_seconds()),
        # The periodic ledger audit's last verdict (None: not run yet).
        "ledger_audit": last_audit(),
    }


# --- Trade timeline ------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    source: str  # "api" | "event" | "outbox" | "fix" | "execution" | "ledger"
    kind: str
    status: str
    epoch: int | None
    detail: str


# At one instant: the request before what it caused.
_SOURCE_ORDER = {
    "api": 0,
    "event": 1,
    "outbox": 2,
    "fix": 3,
    "execution": 4,
    "ledger": 5,
}
_FIX_MESSAGES = {
    "D": "NewOrderSingle",
    "F": "OrderCancelRequest",
    "H": "OrderStatusRequest",
}


def _pairs(detail: dict, skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if k not in skip)


def _describe_status(event: TradeEvent, d: dict) -> tuple[str, str]:
    text = f"{d['from']} → {event.status}" if "from" in d else event.status
    return text, _pairs(d, ("from", "origin"))


def _describe_outbox(event: TradeEvent, d: dict) -> tuple[str, str]:
    text = (
        f"outbox #{d.get('outbox_id')} {d.get('event_type', '')} "
        f"→ topic {d.get('topic', '')}"
    )
    return text, _pairs(d, ("outbox_id", "event_type", "topic"))


def _describe_handled(event: TradeEvent, d: dict) -> tuple[str, str]:
    by = f" by {d['executor']}" if d.get("executor") else ""
    text = (
        f"kafka {d.get('topic')}[{d.get('partition')}] offset {d.get('offset')}"
        f"{by}: action {d.get('action') or '-'} → {d.get('outcome') or '-'}"
    )
    rest = _pairs(d, ("topic", "partition", "offset", "action", "outcome", "executor"))
    return text, rest


def _describe_report(event: TradeEvent, d: dict) -> tuple[str, str]:
    text = f"report session {d.get('session')} seq {d.get('seq')}"
    return text, _pairs(d, ("session", "seq"))


def _describe_fill(event: TradeEvent, d: dict) -> tuple[str, str]:
    text = (
        f"fill {d.get('exec_id')}: {d.get('quantity')} @ {d.get('price')}"
        f" (executed {d.get('executed_at')})"
    )
    return text, _pairs(d, ("exec_id", "quantity", "price", "executed_at"))


_DESCRIBE = {
    TradeEvent.Kind.STATUS: _describe_status,
    TradeEvent.Kind.OUTBOX: _describe_outbox,
    TradeEvent.Kind.HANDLED: _describe_handled,
    TradeEvent.Kind.REPORT: _describe_report,
    TradeEvent.Kind.FILL: _describe_fill,
}


def _describe_event(event: TradeEvent) -> str:
    d = event.detail if isinstance(event.detail, dict) else {"detail": event.detail}
    describe = _DESCRIBE.get(event.kind)
    text, rest = describe(event, d) if describe else ("", _pairs(d))
    return f"{text}; {rest}" if text and rest else text or rest


def _describe_ledger(entry: LedgerEntry) -> str:
    text = f"{entry.bucket} {entry.asset} {entry.amount:+}"
    if entry.execution_id:
        text += f" (execution {entry.execution_id})"
    if entry.memo:
        text += f"; {entry.memo}"
    return text


def trade_outbox_events(trade: Trade) -> QuerySet[OutboxEvent]:
    """The outbox rows about a trade: those whose payload names it, and those its
    timeline points at."""
    ids = [
        detail.get("outbox_id")
        for detail in trade.events.filter(kind=TradeEvent.Kind.OUTBOX).values_list(
            "detail", flat=True
        )
        if isinstance(detail, dict) and detail.get("outbox_id")
    ]
    return OutboxEvent.objects.filter(
        Q(payload__trade_id=str(trade.id)) | Q(pk__in=ids)
    ).order_by("id")


def _describe_origin(origin: dict) -> str:
    text = f"{origin.get('method', '')} {origin.get('path', '')}".strip()
    if origin.get("idempotency_key"):
        text += f", Idempotency-Key {origin['idempotency_key']}"
    if origin.get("peer"):
        text += f", from {origin['peer']}"
    if origin.get("forwarded_for"):
        text += f" (X-Forwarded-For {origin['forwarded_for']})"
    if origin.get("user_agent"):
        text += f", {origin['user_agent']}"
    return text


def trade_timeline(trade: Trade) -> list[TimelineEntry]:
    """Everything that happened to a trade, oldest first: the API request that
    placed it, its TradeEvent rows, its outbox rows (enqueued and published), the
    FIX messages sent about it, its executions and its ledger entries."""
    entries: list[tuple[tuple, TimelineEntry]] = []

    def add(entry: TimelineEntry, row_id: int, order: int = 0) -> None:
        entries.append(((entry.at, _SOURCE_ORDER[entry.source], row_id, order), entry))

    for event in trade.events.order_by("id"):
        origin = event.detail.get("origin") if isinstance(event.detail, dict) else None
        if origin:
            add(
                TimelineEntry(
                    at=event.created_at,
                    source="api",
                    kind="request",
                    status="",
                    epoch=None,
                    detail=_describe_origin(origin),
                ),
                event.pk,
            )
        add(
            TimelineEntry(
                at=event.created_at,
                source="event",
                kind=event.kind,
                status=event.status,
                epoch=event.epoch,
                detail=_describe_event(event),
            ),
            event.pk,
        )
    for outbox in trade_outbox_events(trade):
        where = f"#{outbox.pk} {outbox.event_type} → topic {outbox.topic}"
        published = (
            f"published {outbox.published_at.isoformat()}"
            if outbox.published_at
            else "not published yet"
        )
        add(
            TimelineEntry(
                at=outbox.created_at,
                source="outbox",
                kind="enqueued",
                status="",
                epoch=None,
                detail=f"{where} (key {outbox.key}); {published}",
            ),
            outbox.pk,
        )
        if outbox.published_at:
            add(
                TimelineEntry(
                    at=outbox.published_at,
                    source="outbox",
                    kind="published",
                    status="",
                    epoch=None,
                    detail=where,
                ),
                outbox.pk,
                1,
            )
    for sent in FixJournal.objects.filter(trade=trade).order_by("id"):
        name = _FIX_MESSAGES.get(sent.msg_type, f"MsgType {sent.msg_type}")
        add(
            TimelineEntry(
                at=sent.created_at,
                source="fix",
                kind="sent",
                status="",
                epoch=None,
                detail=f"{name} #{sent.seq} on {sent.session}",
            ),
            sent.pk,
        )
    for fill in Execution.objects.filter(trade=trade).order_by("id"):
        add(
            TimelineEntry(
                at=fill.created_at,
                source="execution",
                kind="execution",
                status="",
                epoch=None,
                detail=(
                    f"{fill.exec_id}: {fill.quantity} @ {fill.price} "
                    f"(executed {fill.executed_at.isoformat()})"
                ),
            ),
            fill.pk,
        )
    for entry in LedgerEntry.objects.filter(trade=trade).order_by("id"):
        add(
            TimelineEntry(
                at=entry.created_at,
                source="ledger",
                kind=entry.kind,
                status="",
                epoch=None,
                detail=_describe_ledger(entry),
            ),
            entry.pk,
        )
    entries.sort(key=lambda pair: pair[0])
    return [entry for _, entry in entries]


# --- Executor leadership -------------------------------------------------------


def election_path(topic: str) -> str:
    return f"{settings.ZOOKEEPER_ROOT}/elections/{topic}"


def leadership_live() -> dict[str, list[str]] | None:
    """topic → the contenders of its ZooKeeper election in order (the first one
    leads; empty when nobody runs for it). None, with a warning logged, when
    ZooKeeper cannot be read."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=settings.ZOOKEEPER_HOSTS, timeout=ZOOKEEPER_TIMEOUT)
    try:
        zk.start(timeout=ZOOKEEPER_TIMEOUT)
        live: dict[str, list[str]] = {}
        for topic in all_topics():
            path = election_path(topic)
            # contenders() would create a missing path: only read existing ones.
            live[topic] = zk.Election(path).contenders() if zk.exists(path) else []
        return live
    except Exception as exc:
        logger.warning(
            "zookeeper unreachable for the admin hosts=%s error=%r",
            settings.ZOOKEEPER_HOSTS,
            exc,
        )
        return None
    finally:
        try:
            zk.stop()
            zk.close()
        except Exception:  # never let cleanup break the page
            logger.debug("zookeeper client cleanup failed", exc_info=True)


def leadership_overview(live: dict[str, list[str]] | None) -> list[dict]:
    """One row per topic: the fence in PostgreSQL (holder, epoch, since), the live
    contenders (None when ZooKeeper was unreachable), the consumer offsets and the
    topic's FIX session (its sequence numbers)."""
    topics = all_topics()
    leaders = {row.topic: row for row in TopicLeader.objects.filter(topic__in=topics)}
    offsets: dict[str, list[ConsumerOffset]] = {}
    for offset in ConsumerOffset.objects.filter(topic__in=topics).order_by(
        "topic", "partition"
    ):
        offsets.setdefault(offset.topic, []).append(offset)
    sessions = {s.topic: s for s in FixSession.objects.filter(topic__in=topics)}
    rows = []
    for topic in topics:
        contenders = None if live is None else live.get(topic, [])
        leader = leaders.get(topic)
        rows.append(
            {
                "topic": topic,
                "fence": leader,
                "contenders": contenders,
                "live_leader": contenders[0] if contenders else None,
                "offsets": offsets.get(topic, []),
                "fix_session": sessions.get(topic),
            }
        )
    return rows
