"""HTTP client of the exchange's quotes (exchange_mock locally, ``EXCHANGE_URL``):
the api's last prices. Orders go over FIX (executor/fix/, docs/FIX.md)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import urllib3

from broker.observability.metrics import EXCHANGE_LATENCY

logger = logging.getLogger(__name__)


class ExchangeError(Exception):
    """The exchange could not be reached or answered with a server error."""


class ExchangeRefused(Exception):
    """The exchange answered with a definitive 4xx: asking again will not help."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal


class ExchangeClient:
    """One keep-alive HTTP session to the exchange; not shared between threads."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        # urllib3 rather than requests: the same keep-alive connection for a
        # fraction of the CPU per request (no environment, proxy and hook lookups
        # on every call), which placement pays per quote. One connection: a
        # client belongs to one thread.
        self._http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
        self._headers = {"Content-Type": "application/json"}

    def close(self) -> None:
        self._http.clear()

    def quote(self, symbol: str) -> Quote | None:
        """The current quote, or None when the exchange does not list ``symbol``."""
        response = self._request(
            "GET",
            f"/quotes/{url_quote(symbol, safe='')}",
            allow_404=True,
            operation="quote",
        )
        if response is None:
            return None
        body = response.json()
        return Quote(
            symbol=body["symbol"],
            bid=Decimal(body["bid"]),
            ask=Decimal(body["ask"]),
            last=Decimal(body["last"]),
        )

    def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        allow_404: bool = False,
        body_json: dict | None = None,
        params: dict | None = None,
        timeout: float | None = None,
    ) -> urllib3.BaseHTTPResponse | None:
        url = self._base_url + path
        if params:
            url += "?" + urlencode(params)
        body = None if body_json is None else json.dumps(body_json).encode()
        started = time.perf_counter()
        try:
            response = self._http.request(
                method,
                url,
                body=body,
                headers=self._headers,
                timeout=self._timeout if timeout is None else timeout,
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ExchangeError(f"{method} {path}: {exc}") from exc
        finally:
            EXCHANGE_LATENCY.labels(operation).observe(time.perf_counter() - started)
        if response.status >= 500:
            raise ExchangeError(f"{method} {path}: HTTP {response.status}")
        if response.status == 404 and allow_404:
            return None
        if response.status >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {}
            if not isinstance(problem, dict):
                problem = {}
            code = str(problem.get("code", "refused"))
            detail = problem.get("detail", response.data[:200].decode(errors="replace"))
            raise ExchangeRefused(response.status, code, str(detail))
        return response
