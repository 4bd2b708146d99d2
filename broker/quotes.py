"""Prices for the api, from the exchange. One keep-alive client per thread
(gunicorn threads, test threads): a requests.Session is not meant to be shared."""

from __future__ import annotations

import threading
from decimal import Decimal

from django.conf import settings

from broker.errors import ExchangeUnavailable
from broker.exchange_client import ExchangeClient, ExchangeError, ExchangeRefused, Quote

_local = threading.local()


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
    """The exchange's last price of ``symbol``; None if it does not list it."""
    found = quote(symbol)
    return None if found is None else found.last
