"""The exchange's time: an accelerated wall clock, market hours, and the timer
that opens and closes the market on schedule.

- :class:`ExchangeClock`: exchange time starts at ``start`` and runs ``speed``
  exchange seconds per real second (monotonic underneath: never jumps back
  within one process).
- :class:`MarketHours`: the schedule, in UTC, Monday to Friday, no holidays.
  ``always_open`` (the default for local use) means the market never opens or
  closes on its own; only the operator (admin API) closes and reopens it.
- :class:`MarketTimer`: a thread calling ``on_close`` / ``on_open`` at the
  scheduled transitions (not started when always open).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as daytime

from exchange_mock.logfmt import log_event
from exchange_mock.wire import utcnow

logger = logging.getLogger(__name__)

DEFAULT_OPEN = daytime(9, 30)
DEFAULT_CLOSE = daytime(16, 0)


class ExchangeClock:
    """Exchange wall time, ``speed`` times as fast as real time. Thread-safe."""

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, not {speed}")
        self._start = (start or utcnow()).astimezone(UTC)
        self._speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        elapsed = (self._monotonic() - self._origin) * self._speed
        return self._start + timedelta(seconds=elapsed)

    def real_seconds(self, exchange_seconds: float) -> float:
        """How long ``exchange_seconds`` of exchange time take in real time."""
        return exchange_seconds / self._speed


@dataclass(frozen=True)
class MarketHours:
    """When the market is scheduled to be open: weekdays, ``open`` <= t < ``close``
    (UTC). With ``always_open`` it is always scheduled open and never closes."""

    open: daytime = DEFAULT_OPEN
    close: daytime = DEFAULT_CLOSE
    always_open: bool = True

    def __post_init__(self) -> None:
        if not self.open < self.close:
            raise ValueError(f"open {self.open} must be before close {self.close}")

    def is_scheduled_open(self, moment: datetime) -> bool:
        if self.always_open:
            return True
        moment = moment.astimezone(UTC)
        return moment.weekday() < 5 and self.open <= moment.time() < self.close

    def next_open(self, moment: datetime) -> datetime | None:
        """The first scheduled opening strictly after ``moment`` (None if always
        open)."""
        return None if self.always_open else self._next(moment, self.open)

    def next_close(self, moment: datetime) -> datetime | None:
        """The first scheduled close strictly after ``moment`` (None if always
        open)."""
        return None if self.always_open else self._next(moment, self.close)

    def session_date(self, is_open: bool, moment: datetime) -> date:
        """The trading date an order accepted now belongs to: the session that is
        open (it ends at the next close), or, while closed, the next one to
        open. Always open: the exchange's calendar date."""
        if self.always_open:
            return moment.astimezone(UTC).date()
        boundary = self.next_close(moment) if is_open else self.next_open(moment)
        assert boundary is not None
        return boundary.date()

    def _next(self, moment: datetime, at: daytime) -> datetime:
        moment = moment.astimezone(UTC)
        for days in range(8):  # a weekday always comes within a week
            day = moment.date() + timedelta(days=days)
            candidate = datetime.combine(day, at, tzinfo=UTC)
            if day.weekday() < 5 and candidate > moment:
                return candidate
        raise AssertionError("unreachable: no weekday within 8 days")


class MarketTimer:
    """Background thread that applies the schedule: ``on_close()`` when a close
    passed, then ``on_open()`` when an opening passed and the market is scheduled
    open now. Checks at every transition (and at least once a second), so a
    fast clock that skips a whole session between checks still closes it."""

    def __init__(
        self,
        clock: ExchangeClock,
        hours: MarketHours,
        on_open: Callable[[], object],
        on_close: Callable[[], object],
        max_sleep: float = 1.0,
    ) -> None:
        self._clock = clock
        self._hours = hours
        self._on_open = on_open
        self._on_close = on_close
        self._max_sleep = max_sleep
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="market-timer", daemon=True
        )

    def start(self) -> None:
        if not self._hours.always_open:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def step(self, last: datetime, now: datetime) -> None:
        """Apply the transitions scheduled in (last, now]."""
        hours = self._hours
        closed = (close := hours.next_close(last)) is not None and close <= now
        opened = (opening := hours.next_open(last)) is not None and opening <= now
        if closed:
            self._on_close()
        if (closed or opened) and hours.is_scheduled_open(now):
            self._on_open()

    def _sleep_for(self, now: datetime) -> float:
        opening, close = self._hours.next_open(now), self._hours.next_close(now)
        assert opening is not None and close is not None  # not always open
        soonest = min(opening, close)
        seconds = self._clock.real_seconds((soonest - now).total_seconds())
        # A hair past the edge, so the check after the wait sees it passed.
        return min(max(seconds + 0.001, 0.001), self._max_sleep)

    def _run(self) -> None:
        log_event(logger, "market_timer_started")
        last = self._clock.now()
        # Event.wait, not sleep: stop() interrupts the wait at once.
        while not self._stop.wait(self._sleep_for(last)):
            now = self._clock.now()
            try:
                self.step(last, now)
            except Exception:  # keep the schedule running; the log has the bug
                logger.exception("market timer step failed")
            last = now
