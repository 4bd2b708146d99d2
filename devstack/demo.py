"""The demo's workload, over real HTTP: concurrent market buys for several customers,
plus one of each interesting path — a limit order that rests and fills when the
price crosses, a resting order canceled, and an order filled in several parts.

It rides out a process being killed and restarted underneath it: placements carry an
``Idempotency-Key`` and are retried while the api is unreachable, reads are retried,
and every wait gives up at once when the demo is stopping."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

import requests

from broker.money import to_cents
from broker.services.transitions import TERMINAL
from devstack.launcher import Stopping
from devstack.wait import NotReady, wait_until
from exchange_mock.admin import admin_headers

SYMBOLS = ["AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX"]
# How long a placement is retried while the api is unreachable (being restarted).
PLACE_RETRY_SECONDS = 60.0


@dataclass
class DemoTrade:
    label: str
    token: str
    id: str
    expected: str
    final: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.final.get("status") == self.expected


class DemoApi:
    def __init__(
        self,
        api_url: str,
        exchange_url: str,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.api_url = api_url
        self.exchange_url = exchange_url
        # Polled by every wait: True once the demo is shutting down.
        self.stopping = stopping

    def _session(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        return session

    def _unless_stopping(self, probe: Callable[[], object]) -> Callable[[], object]:
        def checked() -> object:
            if self.stopping():
                raise Stopping("the demo is stopping")
            return probe()

        return checked

    def place(self, token: str, **order) -> dict:
        """POST the trade; a connection error is retried with the same
        ``Idempotency-Key``, so a retry never places a second trade."""
        body = {"side": "buy", "type": "market", **order}
        session = self._session(token)
        session.headers["Idempotency-Key"] = uuid.uuid4().hex
        # In a tuple: a Response is falsy on a 4xx, which must end the wait too.
        (response,) = wait_until(
            self._unless_stopping(
                lambda: (
                    session.post(
                        f"{self.api_url}/api/v1/trades", json=body, timeout=30
                    ),
                )
            ),
            timeout=PLACE_RETRY_SECONDS,
            interval=0.5,
            retry_on=(requests.ConnectionError,),
            what="the api to take a placement",
        )
        if response.status_code != 201:
            raise RuntimeError(
                f"placement refused: {response.status_code} {response.text}"
            )
        return response.json()

    def trade(self, token: str, trade_id: str) -> dict:
        return (
            self._session(token)
            .get(f"{self.api_url}/api/v1/trades/{trade_id}", timeout=10)
            .json()
        )

    def cancel(self, token: str, trade_id: str) -> None:
        self._session(token).post(
            f"{self.api_url}/api/v1/trades/{trade_id}/cancel", timeout=30
        )

    def wait_status(
        self, token: str, trade_id: str, statuses: set[str], timeout: float = 60
    ) -> dict:
        def reached() -> dict | None:
            body = self.trade(token, trade_id)
            return body if body["status"] in statuses else None

        return wait_until(
            self._unless_stopping(reached),
            timeout=timeout,
            interval=0.1,
            retry_on=(requests.RequestException, ValueError, KeyError),
            what=f"trade {trade_id} {statuses}",
        )

    def last_price(self, symbol: str) -> Decimal:
        quote = requests.get(f"{self.exchange_url}/quotes/{symbol}", timeout=10)
        return Decimal(quote.json()["last"])

    def set_quote(self, symbol: str, **body: str) -> None:
        requests.post(
            f"{self.exchange_url}/admin/quotes/{symbol}",
            json=body,
            headers=admin_headers(),
            timeout=10,
        ).raise_for_status()


def _price(value: Decimal) -> str:
    return str(to_cents(value, rounding=ROUND_DOWN))


def market_buys(
    api: DemoApi, tokens: list[str], per_customer: int, log: Callable[[str], None]
) -> list[DemoTrade]:
    """Every customer buys ``per_customer`` times, all at once."""
    jobs = [(c, n) for n in range(per_customer) for c in range(len(tokens))]
    log(f"Placing {len(jobs)} market buys concurrently over HTTP...")

    def place(job: tuple[int, int]) -> DemoTrade:
        customer_index, n = job
        token = tokens[customer_index]
        symbol = SYMBOLS[(customer_index + n) % len(SYMBOLS)]
        trade = api.place(token, symbol=symbol, quantity=str(1 + n))
        return DemoTrade(f"market {symbol}", token, trade["id"], "filled")

    with ThreadPoolExecutor(max_workers=min(16, len(jobs))) as pool:
        return list(pool.map(place, jobs))


def limit_that_crosses(api: DemoApi, token: str, log) -> DemoTrade:
    symbol = "MSFT"
    limit = api.last_price(symbol) * Decimal("0.97")
    trade = api.place(
        token,
        symbol=symbol,
        type="limit",
        quantity="3",
        limit_price=_price(limit),
        time_in_force="gtc",
    )
    api.wait_status(token, trade["id"], {"submitted"})
    log(f"limit buy {symbol} @ {_price(limit)} rests; moving the price through it")
    api.set_quote(symbol, last=_price(limit * Decimal("0.99")))
    return DemoTrade(
        f"limit {symbol} (rested, then crossed)", token, trade["id"], "filled"
    )


def resting_then_canceled(api: DemoApi, token: str, log) -> DemoTrade:
    symbol = "AAPL"
    limit = api.last_price(symbol) * Decimal("0.80")
    trade = api.place(
        token,
        symbol=symbol,
        type="limit",
        quantity="2",
        limit_price=_price(limit),
        time_in_force="gtc",
    )
    api.wait_status(token, trade["id"], {"submitted"})
    log(f"limit buy {symbol} @ {_price(limit)} rests; canceling it")
    api.cancel(token, trade["id"])
    return DemoTrade(f"limit {symbol} (canceled)", token, trade["id"], "canceled")


def filled_in_parts(api: DemoApi, token: str, log) -> DemoTrade:
    symbol = "NVDA"
    api.set_quote(symbol, size="2")  # 2 shares per quote tick at the touch
    limit = api.last_price(symbol) * Decimal("1.02")
    trade = api.place(
        token,
        symbol=symbol,
        type="limit",
        quantity="6",
        limit_price=_price(limit),
        time_in_force="day",
    )
    log(f"limit buy 6 {symbol} against a touch of 2 per tick: filling in parts")
    api.wait_status(token, trade["id"], TERMINAL)
    api.set_quote(symbol, size="1000")
    return DemoTrade(f"limit {symbol} (partial fills)", token, trade["id"], "filled")


def run(
    api: DemoApi,
    tokens: list[str],
    per_customer: int,
    timeout: float,
    log: Callable[[str], None],
) -> list[DemoTrade]:
    trades = market_buys(api, tokens, per_customer, log)
    trades.append(limit_that_crosses(api, tokens[0], log))
    trades.append(resting_then_canceled(api, tokens[1 % len(tokens)], log))
    trades.append(filled_in_parts(api, tokens[2 % len(tokens)], log))
    for trade in trades:
        try:
            trade.final = api.wait_status(trade.token, trade.id, TERMINAL, timeout)
        except NotReady:  # report it as not done rather than abort the summary
            trade.final = api.trade(trade.token, trade.id)
    return trades
