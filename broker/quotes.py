"""Prices for the api, from the exchange. One keep-alive client per thread
(gunicorn threads, test threads): a requests.Session is not meant to be shared.

``last_price`` (what placement holds against, and what positions are valued at)
reuses a price fetched less than ``QUOTE_MAX_AGE_SECONDS`` ago by this process: one
exchange round trip per symbol per interval instead of one per placement. Safe for
money: a market buy carries its collar price, and the exchange never fills it above
that, however the price moved since."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from django.conf import settings

from broker.errors import ExchangeUnavailable
from broker.exchange_client import ExchangeClient, ExchangeError, ExchangeRefused, Quote

_local = threading.local()
# symbol -> (monotonic time fetched, last price or None when not listed). Plain dict
# operations: atomic under the GIL, and a race only fetches once more.
_last_prices: dict[str, tuple[float, Decimal | None]] = {}


def _client() -> ExchangeClient:
    client = getattr(_local, "client", None)
    if client is None:
        client = ExchangeClient(
            settings.EXCHANGE_URL, timeout=settings.EXCHANGE_TIMEOUT
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
    cached = _last_prices.get(symbol)
    if cached is not None and now - cached[0] < max_age:
        return cached[1]
    found = quote(symbol)
    price = None if found is None else found.last
    if max_age > 0:
        _last_prices[symbol] = (now, price)
    return price
