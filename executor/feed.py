"""The execution-report feed of one exchange session (one per led topic): fills of
resting orders, expiries and cancels arrive here asynchronously. Reports are applied
in a fenced transaction that also stores the feed cursor, so a new leader resumes
exactly after the last report its predecessor applied."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from django.db import close_old_connections, connection

from broker.errors import Fenced
from broker.exchange_client import (
    ExchangeClient,
    ExchangeError,
    ExecutionReport,
    StaleEpoch,
)
from broker.models import Execution, Trade, TradeEvent
from broker.services.leadership import feed_cursor, feed_cursor_advance
from broker.services.settlement import trade_apply_order
from broker.services.transitions import TERMINAL
from executor.fencing import Fence

logger = logging.getLogger(__name__)


def apply_reports(reports: list[ExecutionReport], *, fence: Fence, session: str) -> int:
    """Apply a batch of reports and advance the cursor, in one fenced transaction.
    Replayed or duplicated reports change nothing (exec ids unique per trade, status
    changes conditional). Returns the new cursor."""
    last_seq = max(report.seq for report in reports)
    with fence.transaction():
        for report in reports:
            try:
                trade_id = uuid.UUID(report.client_order_id)
            except ValueError:
                logger.error("report for a foreign order skipped seq=%s", report.seq)
                continue
            status = (
                Trade.objects.filter(id=trade_id)
                .values_list("status", flat=True)
                .first()
            )
            if status is None:
                logger.error(
                    "report for unknown trade skipped trade=%s seq=%s",
                    trade_id,
                    report.seq,
                )
                continue
            if status in TERMINAL and _all_known(trade_id, report):
                # Already booked (usually from the order's own answer): nothing
                # to do, and no need to take the account lock for it.
                continue
            trade_apply_order(trade_id=trade_id, order=report.order, epoch=fence.epoch)
            TradeEvent.objects.create(
                trade_id=trade_id,
                kind="report",
                epoch=fence.epoch,
                detail={"session": session, "seq": report.seq, "type": report.type},
            )
        feed_cursor_advance(session=session, last_seq=last_seq)
    return last_seq


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
        wait: float = 1.0,
    ) -> None:
        super().__init__(name=f"feed-{session}", daemon=True)
        self._fence = fence
        self._session = session
        self._new_client = new_client
        self._stop_event = stop
        self._lost = lost
        self._wait = wait

    def run(self) -> None:
        exchange = self._new_client()
        delay = 0.05
        try:
            close_old_connections()
            cursor = feed_cursor(session=self._session)
            while not (self._stop_event.is_set() or self._lost.is_set()):
                self._fence.check_alive()
                try:
                    reports = exchange.reports(after=cursor, wait=self._wait)
                except StaleEpoch:
                    raise
                except ExchangeError as exc:
                    logger.warning(
                        "feed unavailable session=%s error=%s", self._session, exc
                    )
                    self._stop_event.wait(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                delay = 0.05
                if reports:
                    close_old_connections()
                    cursor = apply_reports(
                        reports, fence=self._fence, session=self._session
                    )
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
