"""HTTP client of the exchange (exchange_mock locally). Used by the api for quotes and
by the executor leader for orders. Orders are idempotent by client_order_id, so a
caller may resend after any error."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from urllib.parse import quote as url_quote

import requests

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
        self._session = requests.Session()
        self.session_id = session_id
        if session_id is not None and epoch is not None:
            self._session.headers["X-Session"] = session_id
            self._session.headers["X-Epoch"] = str(epoch)

    def close(self) -> None:
        self._session.close()

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
        response = self._request("POST", "/orders", json=payload, operation="place")
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
            json={"epoch": int(self._session.headers["X-Epoch"])},
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
        self, method: str, path: str, *, allow_404: bool = False, **kwargs
    ) -> requests.Response | None:
        kwargs.setdefault("timeout", self._timeout)
        operation = kwargs.pop("operation", method)
        started = time.perf_counter()
        try:
            response = self._session.request(method, self._base_url + path, **kwargs)
        except requests.RequestException as exc:
            raise ExchangeError(f"{method} {path}: {exc}") from exc
        finally:
            EXCHANGE_LATENCY.labels(operation).observe(time.perf_counter() - started)
        if response.status_code >= 500:
            raise ExchangeError(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code == 404 and allow_404:
            return None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            code = str(body.get("code", "refused"))
            refusal = StaleEpoch if code == "stale_epoch" else ExchangeRefused
            raise refusal(
                response.status_code, code, str(body.get("detail", response.text[:200]))
            )
        return response
