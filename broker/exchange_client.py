"""HTTP client of the exchange (exchange_mock locally). Used by the api for quotes and
by the executor leader for orders. Orders are idempotent by client_order_id, so a
caller may resend after any error."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import urllib3

from broker.observability.metrics import EXCHANGE_LATENCY

logger = logging.getLogger(__name__)


class ExchangeError(Exception):
    """The exchange could not be reached or answered with a server error: the outcome
    of an order request is unknown, resend it (same client_order_id) or ask."""


class ExchangeRefused(Exception):
    """The exchange answered with a definitive 4xx: resending will not help."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class StaleEpoch(ExchangeRefused):
    """The exchange has seen a newer epoch for this session: a newer leader exists,
    and this one must stop acting."""


@dataclass(frozen=True)
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal


@dataclass(frozen=True)
class ExchangeExecution:
    exec_id: str
    quantity: Decimal
    price: Decimal
    executed_at: datetime

    @classmethod
    def from_json(cls, body: dict) -> ExchangeExecution:
        return cls(
            exec_id=body["exec_id"],
            quantity=Decimal(body["quantity"]),
            price=Decimal(body["price"]),
            executed_at=datetime.fromisoformat(body["timestamp"]),
        )


@dataclass(frozen=True)
class ExchangeOrder:
    client_order_id: str
    order_id: str
    status: str
    filled_quantity: Decimal
    reject_reason: str
    executions: tuple[ExchangeExecution, ...]

    @classmethod
    def from_json(cls, body: dict) -> ExchangeOrder:
        return cls(
            client_order_id=body["client_order_id"],
            order_id=body["order_id"],
            status=body["status"],
            filled_quantity=Decimal(body["filled_quantity"]),
            reject_reason=body.get("reject_reason") or "",
            executions=tuple(
                ExchangeExecution.from_json(e) for e in body.get("executions", [])
            ),
        )


@dataclass(frozen=True)
class ExecutionReport:
    """One entry of a session's execution-report feed."""

    seq: int
    type: str
    client_order_id: str
    order: ExchangeOrder

    @classmethod
    def from_json(cls, body: dict) -> ExecutionReport:
        return cls(
            seq=int(body["seq"]),
            type=body["type"],
            client_order_id=body["client_order_id"],
            order=ExchangeOrder.from_json(body["order"]),
        )


class ExchangeClient:
    """One keep-alive HTTP session to the exchange; not shared between threads.

    With ``session_id`` and ``epoch`` every order request carries them, and the
    exchange refuses (StaleEpoch) a request whose epoch is lower than the highest it
    has seen for the session: a deposed leader cannot act even if it tries.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        session_id: str | None = None,
        epoch: int | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        # urllib3 rather than requests: the same keep-alive connection for a
        # fraction of the CPU per request (no environment, proxy and hook lookups
        # on every call), which the executor pays per order and per feed poll.
        # One connection: a client belongs to one thread.
        self._http = urllib3.PoolManager(num_pools=1, maxsize=1, retries=False)
        self.session_id = session_id
        self.epoch = epoch
        self._headers = {"Content-Type": "application/json"}
        if session_id is not None and epoch is not None:
            self._headers["X-Session"] = session_id
            self._headers["X-Epoch"] = str(epoch)

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

    def place_order(
        self,
        *,
        client_order_id: str,
        symbol: str,
        side: str,
        quantity: Decimal,
        order_type: str,
        time_in_force: str = "day",
        limit_price: Decimal | None = None,
        collar_price: Decimal | None = None,
    ) -> ExchangeOrder:
        """Send an order. A resend with the same client_order_id returns the order
        the exchange already holds, never a second one."""
        payload = {
            "client_order_id": client_order_id,
            "symbol": symbol,
            "side": side,
            "quantity": str(quantity),
            "type": order_type,
            "time_in_force": time_in_force,
        }
        if limit_price is not None:
            payload["limit_price"] = str(limit_price)
        if collar_price is not None:
            payload["collar_price"] = str(collar_price)
        response = self._request(
            "POST", "/orders", body_json=payload, operation="place"
        )
        return ExchangeOrder.from_json(response.json())

    def cancel_order(self, client_order_id: str) -> ExchangeOrder | None:
        """Cancel an open order; a terminal one comes back unchanged (a cancel that
        lost the race to a fill says ``filled``). None if the exchange never
        accepted the order."""
        response = self._request(
            "POST",
            f"/orders/{client_order_id}/cancel",
            allow_404=True,
            operation="cancel",
        )
        return None if response is None else ExchangeOrder.from_json(response.json())

    def logon(self) -> int:
        """Open (or re-open) this client's session with its epoch; returns the
        newest report sequence number of the session's feed."""
        response = self._request(
            "POST",
            f"/sessions/{self.session_id}/logon",
            body_json={"epoch": self.epoch},
            operation="logon",
        )
        return int(response.json()["last_seq"])

    def reports(
        self, *, after: int, limit: int = 500, wait: float = 0
    ) -> list[ExecutionReport]:
        """The session's execution reports after sequence ``after``, in order;
        long-polls up to ``wait`` seconds when there are none yet."""
        response = self._request(
            "GET",
            f"/sessions/{self.session_id}/reports",
            params={"after": after, "limit": limit, "wait": wait},
            timeout=self._timeout + wait,
            operation="reports",
        )
        return [ExecutionReport.from_json(r) for r in response.json()["reports"]]

    def order(self, client_order_id: str) -> ExchangeOrder | None:
        """The exchange's view of one order, or None if it never accepted it."""
        response = self._request(
            "GET", f"/orders/{client_order_id}", allow_404=True, operation="order"
        )
        return None if response is None else ExchangeOrder.from_json(response.json())

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
            refusal = StaleEpoch if code == "stale_epoch" else ExchangeRefused
            detail = problem.get("detail", response.data[:200].decode(errors="replace"))
            raise refusal(response.status, code, str(detail))
        return response
