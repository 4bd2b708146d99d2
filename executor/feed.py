"""The execution-report feed of one exchange session (one per led topic): fills of
resting orders, expiries and cancels arrive here asynchronously. Reports are applied
in a fenced transaction that also stores the feed cursor, so a new leader resumes
exactly after the last report its predecessor applied.

A report that fails to apply every time (the feed's poison message) is set aside
after a few attempts, as a dead letter with its reason, so the reports behind it
(other customers' fills) keep flowing; a database outage is waited out instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

from django.db import (
    close_old_connections,
    connection,
)

from broker.exchange_client import (
    ExchangeClient,
    ExchangeError,
    ExchangeOrder,
    ExecutionReport,
    StaleEpoch,
)
from broker.models import Execution, Trade, TradeEvent
from broker.observability.metrics import FEED_DEAD_LETTERS
from broker.services.settlement import lock_accounts_of, trade_apply_order
from broker.services.transitions import TERMINAL
from executor.booked import BookedOrders
from executor.db_session import ConnectionRefresher
from executor.dead_letters import dead_letter_record
from executor.fencing import Fence, Fenced
from executor.retry import (
    DATABASE_OUTAGES,
    DEFAULT_RETRY,
    Backoff,
    Poisoned,
    RetryPolicy,
    until_poisoned,
)

logger = logging.getLogger(__name__)


def feed_cursor(*, session: str) -> int:
    """Last execution-report sequence applied for an exchange session (0 if none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_seq FROM broker_feedcursor WHERE session = %s", [session]
        )
        row = cursor.fetchone()
    return row[0] if row else 0


def feed_cursor_advance(*, session: str, last_seq: int) -> None:
    """Store the feed position. Must run inside the fenced transaction that applied
    the reports up to ``last_seq``; never moves backwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO broker_feedcursor (session, last_seq, updated_at)
            VALUES (%s, %s, now())
            ON CONFLICT (session) DO UPDATE
               SET last_seq = EXCLUDED.last_seq, updated_at = now()
             WHERE broker_feedcursor.last_seq < EXCLUDED.last_seq
            """,
            [session, last_seq],
        )


def apply_reports(
    reports: list[ExecutionReport],
    *,
    fence: Fence,
    session: str,
    booked: BookedOrders | None = None,
) -> int:
    """Apply a batch of reports and advance the cursor, in one fenced transaction.
    Replayed or duplicated reports change nothing (exec ids unique per trade, status
    changes conditional). Trades it leaves terminal are recorded in ``booked`` once
    committed. Returns the new cursor."""
    last_seq = max(report.seq for report in reports)
    finished: list[ExchangeOrder] = []
    with fence.transaction():
        work = [
            (report, trade_id)
            for report in reports
            if (trade_id := _trade_to_book(report)) is not None
        ]
        lock_accounts_of([trade_id for _, trade_id in work])
        for report, trade_id in work:
            settled = trade_apply_order(
                trade_id=trade_id, order=report.order, epoch=fence.epoch
            )
            if settled.status in TERMINAL:
                finished.append(report.order)
            TradeEvent.objects.create(
                trade_id=trade_id,
                kind=TradeEvent.Kind.REPORT,
                epoch=fence.epoch,
                detail={"session": session, "seq": report.seq, "type": report.type},
            )
        feed_cursor_advance(session=session, last_seq=last_seq)
    if booked is not None:
        for order in finished:
            booked.add(order)
    return last_seq


def _trade_to_book(report: ExecutionReport) -> uuid.UUID | None:
    """The trade a report has something to book for; None for a foreign order, an
    unknown trade, or a report that only repeats what its terminal trade already
    booked (skipped without taking its account's lock)."""
    try:
        trade_id = uuid.UUID(report.client_order_id)
    except ValueError:
        logger.error("report for a foreign order skipped seq=%s", report.seq)
        return None
    status = Trade.objects.filter(id=trade_id).values_list("status", flat=True).first()
    if status is None:
        logger.error(
            "report for unknown trade skipped trade=%s seq=%s", trade_id, report.seq
        )
        return None
    if status in TERMINAL and _all_known(trade_id, report):
        return None
    return trade_id


# A cursor that moved over repeats only is stored at most this often (a new
# leader replays at most that much: harmless).
STORE_SECONDS = 1.0
# How long the feed waits for the leader to book an order it has in flight.
IN_FLIGHT_WAIT_SECONDS = 2.0
# After a poll that brought only echoes of the leader's own bookings.
ECHO_LINGER_SECONDS = 0.05


def apply_reports_isolating(
    reports: list[ExecutionReport],
    *,
    fence: Fence,
    session: str,
    booked: BookedOrders | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> int:
    """``apply_reports``, falling back to one report per transaction when the batch
    fails for a reason that is not an outage or the fence: a report that still
    fails ``retry.poison_attempts`` times is dead-lettered and the cursor moves past it
    (its trade stays open for the stuck-trade reconciliation and operations).
    Returns the new cursor."""
    try:
        return apply_reports(reports, fence=fence, session=session, booked=booked)
    except (Fenced, *DATABASE_OUTAGES):
        raise
    except Exception:
        logger.exception("report batch failed, applying one by one session=%s", session)
    cursor = 0
    for report in sorted(reports, key=lambda r: r.seq):
        try:
            cursor = until_poisoned(
                lambda report=report: apply_reports(
                    [report], fence=fence, session=session, booked=booked
                ),
                fence=fence,
                policy=retry,
                what=f"report session={session} seq={report.seq}",
                wait_outages=False,  # the feed loop waits them out
            )
        except Poisoned as exc:
            cursor = _dead_letter_report(report, exc.reason, fence, session)
    return cursor


def _dead_letter_report(
    report: ExecutionReport, reason: str, fence: Fence, session: str
) -> int:
    """Record the report as a dead letter (position: the feed of ``session`` at the
    report's seq) and move the cursor past it, in one fenced transaction."""
    with fence.transaction():
        dead_letter_record(
            topic=f"feed:{session}",
            partition=0,
            offset=report.seq,
            reason=reason,
            payload=json.dumps(dataclasses.asdict(report), default=str),
            epoch=fence.epoch,
        )
        feed_cursor_advance(session=session, last_seq=report.seq)
    FEED_DEAD_LETTERS.inc()
    logger.error(
        "execution report dead-lettered session=%s seq=%s trade=%s reason=%s",
        session,
        report.seq,
        report.client_order_id,
        reason,
    )
    return report.seq


def _all_known(trade_id: uuid.UUID, report: ExecutionReport) -> bool:
    """Every execution of the report is already booked on this trade (exec ids
    are only unique within an order)."""
    exec_ids = {execution.exec_id for execution in report.order.executions}
    booked = Execution.objects.filter(trade_id=trade_id, exec_id__in=exec_ids)
    return booked.count() == len(exec_ids)


class FeedFollower(threading.Thread):
    """Long-polls the session's feed while the leadership lasts. Any sign that this
    process is no longer the leader sets ``lost`` for the leader loop to see."""

    def __init__(
        self,
        *,
        fence: Fence,
        session: str,
        new_client: Callable[[], ExchangeClient],
        stop: threading.Event,
        lost: threading.Event,
        booked: BookedOrders | None = None,
        wait: float = 1.0,
    ) -> None:
        super().__init__(name=f"feed-{session}", daemon=True)
        self._fence = fence
        self._session = session
        self._booked = booked or BookedOrders()
        self._new_client = new_client
        self._stop_event = stop
        self._lost = lost
        self._wait = wait

    def run(self) -> None:
        exchange = self._new_client()
        backoff = Backoff()
        try:
            close_old_connections()
            connections = ConnectionRefresher()
            cursor = stored = feed_cursor(session=self._session)
            stored_at = time.monotonic()
            while not (self._stop_event.is_set() or self._lost.is_set()):
                if cursor > stored and time.monotonic() - stored_at >= STORE_SECONDS:
                    # Only repeats were passed over since: store how far we are.
                    connections.maybe()
                    with self._fence.transaction():
                        feed_cursor_advance(session=self._session, last_seq=cursor)
                    stored, stored_at = cursor, time.monotonic()
                self._fence.check_alive()
                try:
                    reports = exchange.reports(after=cursor, wait=self._wait)
                except StaleEpoch:
                    raise
                except ExchangeError as exc:
                    logger.warning(
                        "feed unavailable session=%s error=%s", self._session, exc
                    )
                    self._stop_event.wait(backoff.next())
                    continue
                backoff.reset()
                if not reports:
                    continue
                # The leader's own answers come back here, often before it has
                # booked them: let it finish rather than book them twice.
                self._booked.wait_settled(reports, timeout=IN_FLIGHT_WAIT_SECONDS)
                fresh = [r for r in reports if not self._booked.covers(r)]
                if not fresh:
                    cursor = max(r.seq for r in reports)
                    # Echoes only: let a few more gather before the next poll
                    # (one round trip for many under load).
                    self._stop_event.wait(ECHO_LINGER_SECONDS)
                    continue
                connections.maybe()
                try:
                    applied = apply_reports_isolating(
                        fresh,
                        fence=self._fence,
                        session=self._session,
                        booked=self._booked,
                    )
                    stored, stored_at = applied, time.monotonic()
                    cursor = max(applied, *(r.seq for r in reports))
                except DATABASE_OUTAGES as exc:
                    # PostgreSQL is away: wait for it (the same reports come again).
                    logger.warning(
                        "database unavailable, feed waits session=%s error=%s",
                        self._session,
                        exc,
                    )
                    close_old_connections()
                    self._stop_event.wait(1.0)
        except (Fenced, StaleEpoch) as exc:
            logger.warning(
                "feed stopped: fenced session=%s reason=%s", self._session, exc
            )
            self._lost.set()
        except Exception:
            logger.exception("feed crashed session=%s", self._session)
            self._lost.set()
        finally:
            exchange.close()
            connection.close()
