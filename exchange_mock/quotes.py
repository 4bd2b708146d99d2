"""Quotes: a seeded random walk per symbol, thread-safe.

Contract: given the same seed and the same number of :meth:`QuoteBook.step` calls
(and no :meth:`QuoteBook.set`), every quote is identical (the timestamp aside).
Each step moves every symbol's mid by a gaussian relative change (sigma 0.05 %) in
the fixed symbol order, so one random stream drives the whole book. Prices are
rounded to 0.01 and never <= 0.

Liquidity: each quote carries one ``size`` at the touch (bid and ask alike). The
matching engine offers that size to every crossing order at every tick, so the
model stays deterministic: no queue, no depletion.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from exchange_mock.logfmt import log_event
from exchange_mock.wire import CENT, format_decimal, isoformat, utcnow

logger = logging.getLogger(__name__)

# The walk keeps more precision than it shows: rounding the walk itself to cents
# every step would make cheap symbols stick at one price.
_INTERNAL = Decimal("0.00000001")
STEP_SIGMA = 0.0005  # relative, per tick
HALF_SPREAD_RATIO = Decimal("0.0001")  # half of a 0.02 % spread
MIN_HALF_SPREAD = CENT
# Floor of the mid: keeps bid = mid - half spread strictly positive.
MIN_MID = Decimal("1.00")
DEFAULT_TOUCH_SIZE = Decimal("1000")

DEFAULT_PRICES: Mapping[str, Decimal] = {
    "AAPL": Decimal("190.00"),
    "MSFT": Decimal("410.00"),
    "GOOG": Decimal("165.00"),
    "AMZN": Decimal("180.00"),
    "TSLA": Decimal("250.00"),
    "NVDA": Decimal("120.00"),
    "META": Decimal("500.00"),
    "NFLX": Decimal("650.00"),
    "IBM": Decimal("170.00"),
    "ORCL": Decimal("125.00"),
}


@dataclass(frozen=True)
class Quote:
    """One symbol's top of book. ``last`` is the mid; bid < last < ask; ``size``
    is the quantity available at the bid and at the ask."""

    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp: datetime
    tick: int
    size: Decimal = DEFAULT_TOUCH_SIZE

    def to_json(self) -> dict[str, str | int]:
        return {
            "symbol": self.symbol,
            "bid": str(self.bid),
            "ask": str(self.ask),
            "last": str(self.last),
            "size": format_decimal(self.size),
            "timestamp": isoformat(self.timestamp),
            "tick": self.tick,
        }


def make_quote(
    symbol: str,
    mid: Decimal,
    timestamp: datetime,
    tick: int,
    size: Decimal = DEFAULT_TOUCH_SIZE,
) -> Quote:
    """Quote around ``mid``: half spread = max(0.01 % of mid, 0.01), in cents."""
    last = mid.quantize(CENT, rounding=ROUND_HALF_UP)
    half = (last * HALF_SPREAD_RATIO).quantize(CENT, ROUND_HALF_UP)
    half = max(half, MIN_HALF_SPREAD)
    bid = max(last - half, CENT)
    return Quote(symbol, bid, last + half, last, timestamp, tick, size)


QuoteListener = Callable[[Mapping[str, Quote]], None]


class QuoteBook:
    """The current quote of every listed symbol. All methods are thread-safe."""

    def __init__(
        self,
        seed: int = 42,
        prices: Mapping[str, Decimal] | None = None,
        clock: Callable[[], datetime] = utcnow,
        touch_size: Decimal = DEFAULT_TOUCH_SIZE,
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.Lock()
        self._mids = {s: Decimal(p) for s, p in (prices or DEFAULT_PRICES).items()}
        self._sizes = dict.fromkeys(self._mids, Decimal(touch_size))
        self._symbols = tuple(self._mids)
        self._tick = 0
        self._quotes = self._build(clock())
        self._listeners: list[QuoteListener] = []

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def tick(self) -> int:
        with self._lock:
            return self._tick

    def has(self, symbol: str) -> bool:
        return symbol in self._mids

    def get(self, symbol: str) -> Quote | None:
        """The current quote, or None for a symbol the exchange does not list."""
        with self._lock:
            return self._quotes.get(symbol)

    def snapshot(self) -> dict[str, Quote]:
        with self._lock:
            return dict(self._quotes)

    def subscribe(self, listener: QuoteListener) -> None:
        """Call ``listener(quotes)`` after every step or :meth:`set`, outside the
        book's lock, in the thread that moved the quotes; ``quotes`` holds the
        symbols that changed. The hook for resting orders that fill as quotes move.
        """
        with self._lock:
            self._listeners.append(listener)

    def step(self, count: int = 1) -> dict[str, Quote]:
        """Advance the walk ``count`` ticks; returns the new quotes."""
        with self._lock:
            for _ in range(count):
                self._tick += 1
                for symbol in self._symbols:
                    change = Decimal(repr(self._rng.gauss(0.0, STEP_SIGMA)))
                    mid = (self._mids[symbol] * (1 + change)).quantize(_INTERNAL)
                    self._mids[symbol] = max(mid, MIN_MID)
            self._quotes = self._build(self._clock())
            quotes = dict(self._quotes)
            listeners = list(self._listeners)
        self._notify(listeners, quotes)
        return quotes

    def set(
        self, symbol: str, last: Decimal | None = None, size: Decimal | None = None
    ) -> Quote:
        """Set ``symbol``'s mid and/or touch size (operator control), then notify
        the listeners like a tick of that one symbol; returns the new quote.

        Raises KeyError for a symbol the exchange does not list. Does not count
        as a step: the walk carries on from the new mid.
        """
        with self._lock:
            if symbol not in self._mids:
                raise KeyError(symbol)
            if last is not None:
                self._mids[symbol] = max(Decimal(last), MIN_MID)
            if size is not None:
                self._sizes[symbol] = Decimal(size)
            quote = make_quote(
                symbol,
                self._mids[symbol],
                self._clock(),
                self._tick,
                self._sizes[symbol],
            )
            self._quotes = {**self._quotes, symbol: quote}
            listeners = list(self._listeners)
        self._notify(listeners, {symbol: quote})
        return quote

    def _notify(
        self, listeners: list[QuoteListener], quotes: Mapping[str, Quote]
    ) -> None:
        for listener in listeners:
            try:
                listener(quotes)
            except Exception:  # a listener's bug must not stop the quotes
                logger.exception("quote listener failed")

    def _build(self, now: datetime) -> dict[str, Quote]:
        return {
            s: make_quote(s, mid, now, self._tick, self._sizes[s])
            for s, mid in self._mids.items()
        }


class QuoteTicker:
    """Background thread stepping a :class:`QuoteBook` every ``interval`` seconds.

    ``interval`` 0 means frozen quotes: the thread is not started (useful for
    tests that want a fill price they can predict).
    """

    def __init__(self, book: QuoteBook, interval: float) -> None:
        self._book = book
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="quote-ticker", daemon=True
        )

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        log_event(logger, "quote_ticker_started", interval=self._interval)
        # Event.wait, not sleep: stop() interrupts the wait at once.
        while not self._stop.wait(self._interval):
            self._book.step()
