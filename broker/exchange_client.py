"""HTTP client of the exchange (exchange_mock locally). Used by the api for quotes and
by the executor leader for orders. Orders are idempotent by client_order_id, so a
caller may resend after any error."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import requests

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
                ExchangeExecution(
                    exec_id=e["exec_id"],
                    quantity=Decimal(e["quantity"]),
                    price=Decimal(e["price"]),
                    executed_at=datetime.fromisoformat(e["timestamp"]),
                )
                for e in body.get("executions", [])
            ),
        )


class ExchangeClient:
    """One keep-alive HTTP session to the exchange; not shared between threads."""

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def quote(self, symbol: str) -> Quote | None:
        """The current quote, or None when the exchange does not list ``symbol``."""
        response = self._request("GET", f"/quotes/{symbol}", allow_404=True)
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
        collar_price: Decimal | None,
    ) -> ExchangeOrder:
        """Send an order. A resend with the same client_order_id returns the order
        the exchange already holds, never a second one."""
        payload = {
            "client_order_id": client_order_id,
            "symbol": symbol,
            "side": side,
            "quantity": str(quantity),
            "type": order_type,
        }
        if collar_price is not None:
            payload["collar_price"] = str(collar_price)
        response = self._request("POST", "/orders", json=payload)
        return ExchangeOrder.from_json(response.json())

    def order(self, client_order_id: str) -> ExchangeOrder | None:
        """The exchange's view of one order, or None if it never accepted it."""
        response = self._request("GET", f"/orders/{client_order_id}", allow_404=True)
        return None if response is None else ExchangeOrder.from_json(response.json())

    def _request(
        self, method: str, path: str, *, allow_404: bool = False, **kwargs
    ) -> requests.Response | None:
        try:
            response = self._session.request(
                method, self._base_url + path, timeout=self._timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise ExchangeError(f"{method} {path}: {exc}") from exc
        if response.status_code >= 500:
            raise ExchangeError(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code == 404 and allow_404:
            return None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ExchangeRefused(
                response.status_code,
                str(body.get("code", "refused")),
                str(body.get("detail", response.text[:200])),
            )
        return response
