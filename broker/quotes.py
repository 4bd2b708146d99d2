"""Prices for the api, from the exchange. One keep-alive client per thread
(gunicorn threads, test threads): a requests.Session is not meant to be shared.

``last_price`` (what placement holds against, and what positions are valued at)
reuses a price fetched less than ``QUOTE_MAX_AGE_SECONDS`` ago by this process: one
exchange round trip per symbol per interval instead of one per placement. Safe for
money: a market buy carries its collar price, and the exchange never fills it above
that, however the price moved since.

The reuse is bounded: listed symbols in an LRU of ``LISTED_CACHE_SIZE``, symbols
the exchange does not list in their own, smaller LRU and for at most
``UNLISTED_MAX_AGE_SECONDS``: any ticker-shaped string reaches this cache, and a
stream of made-up ones must neither grow the process nor evict the real prices."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from decimal import Decimal

from django.conf import settings

from broker.errors import ExchangeUnavailable
from broker.exchange_client import ExchangeClient, ExchangeError, ExchangeRefused, Quote

# More than every symbol of the US equity venues (about 8,000).
LISTED_CACHE_SIZE = 10_000
UNLISTED_CACHE_SIZE = 1_000
UNLISTED_MAX_AGE_SECONDS = 1.0


class PriceCache:
    """A thread-safe LRU of symbol -> (monotonic time fetched, last price or None
    when not listed), holding at most ``capacity`` symbols."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[float, Decimal | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(
        self, symbol: str, *, now: float, max_age: float
    ) -> tuple[bool, Decimal | None]:
        """(True, price) if ``symbol`` was stored less than ``max_age`` seconds
        before ``now``, else (False, None)."""
        with self._lock:
            entry = self._entries.get(symbol)
            if entry is None or now - entry[0] >= max_age:
                return False, None
            self._entries.move_to_end(symbol)
            return True, entry[1]

    def put(self, symbol: str, price: Decimal | None, *, now: float) -> None:
        with self._lock:
            self._entries[symbol] = (now, price)
            self._entries.move_to_end(symbol)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def discard(self, symbol: str) -> None:
        with self._lock:
            self._entries.pop(symbol, None)


_local = threading.local()
_listed = PriceCache(LISTED_CACHE_SIZE)
_unlisted = PriceCache(UNLISTED_CACHE_SIZE)


def _client() -> ExchangeClient:
    client = getattr(_local, "client", None)
    if client is None:
        client = ExchangeClient(
            settings.EXCHANGE_QUOTES_URL, timeout=settings.EXCHANGE_TIMEOUT
        )
        _local.client = client
    return client


def quote(symbol: str) -> Quote | None:
    """The exchange's quote of ``symbol``; None if it does not list it."""
    try:
        return _client().quote(symbol)
    except ExchangeError as exc:
        raise ExchangeUnavailable("the exchange does not answer") from exc
    except ExchangeRefused as exc:  # a 4xx other than 404: no quote to be had
        raise ExchangeUnavailable(
            f"the exchange refused the quote: {exc.code}"
        ) from exc


def last_price(symbol: str) -> Decimal | None:
    """The exchange's last price of ``symbol``, at most ``QUOTE_MAX_AGE_SECONDS``
    old; None if it does not list it."""
    max_age = settings.QUOTE_MAX_AGE_SECONDS
    now = time.monotonic()
    hit, price = _listed.get(symbol, now=now, max_age=max_age)
    if not hit:
        hit, price = _unlisted.get(
            symbol, now=now, max_age=min(max_age, UNLISTED_MAX_AGE_SECONDS)
        )
    if hit:
        return price
    found = quote(symbol)
    price = None if found is None else found.last
    if max_age > 0:
        # A symbol lives in one of the two caches at a time.
        if price is None:
            _listed.discard(symbol)
            _unlisted.put(symbol, None, now=now)
        else:
            _unlisted.discard(symbol)
            _listed.put(symbol, price, now=now)
    return price
