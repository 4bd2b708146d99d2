"""Operator and test controls (no auth: a simulator bound to loopback)::

    POST /admin/quotes/<symbol>   {"last"?, "size"?}  200 quote, matching done
    POST /admin/session/close     200 clock (open day orders expired)
    POST /admin/session/open      200 clock (resting orders matched)
    GET  /admin/stats             200 {"orders", "open_orders", "feed_waiters", ...}
    GET  /admin/faults            200 {"config", "counters"}
    POST /admin/faults            {...} replaces the config ({} clears) -> 200

Fault injection never applies here, so the operator can always clear it. An
empty body counts as ``{}``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from exchange_mock.faults import FaultConfig, FaultConfigError
from exchange_mock.logfmt import log_event
from exchange_mock.orders import MAX_PRICE, MAX_QUANTITY, QUANTITY_STEP
from exchange_mock.problems import Problem, invalid, parse_json_body
from exchange_mock.quotes import MIN_MID
from exchange_mock.request import Request, Response, Routes, segment
from exchange_mock.wire import CENT, parse_decimal

logger = logging.getLogger(__name__)


def _body(h: Request) -> Any:
    return parse_json_body(h.body) if h.body.strip() else {}


def _set_quote(h: Request, params: dict[str, str]) -> Response:
    body = _body(h)
    if not isinstance(body, dict):
        raise invalid("invalid_quote", "Invalid quote", {"body": ["not an object"]})
    errors = {name: ["unknown field"] for name in sorted(set(body) - {"last", "size"})}
    last = size = None
    if body.get("last") is not None:
        last, message = parse_decimal(
            body["last"], maximum=MAX_PRICE, step=CENT, places=2
        )
        if message is None and last is not None and last < MIN_MID:
            message = f"must be at least {MIN_MID} (the floor of the walk)"
        if message:
            errors["last"] = [message]
    if body.get("size") is not None:
        size, message = parse_decimal(
            body["size"],
            maximum=MAX_QUANTITY,
            step=QUANTITY_STEP,
            places=6,
            allow_zero=True,
        )
        if message:
            errors["size"] = [message]
    if errors:
        raise invalid("invalid_quote", "Invalid quote", errors)
    symbol = params["symbol"]
    try:
        # Runs the matching of the symbol's resting orders before returning.
        quote = h.exchange.quotes.set(symbol, last=last, size=size)
    except KeyError as exc:
        raise Problem(
            404,
            "unknown_symbol",
            "Unknown symbol",
            f"the exchange does not list {symbol!r}",
        ) from exc
    log_event(logger, "quote_set", symbol=symbol, last=quote.last, size=quote.size)
    return 200, quote.to_json(), {}


def _close(h: Request, params: dict[str, str]) -> Response:
    return 200, h.exchange.close_market(), {}


def _open(h: Request, params: dict[str, str]) -> Response:
    return 200, h.exchange.open_market(), {}


def _stats(h: Request, params: dict[str, str]) -> Response:
    return 200, {**h.exchange.stats(), "connections": h.connection_count}, {}


def _get_faults(h: Request, params: dict[str, str]) -> Response:
    return 200, h.faults.snapshot(), {}


def _set_faults(h: Request, params: dict[str, str]) -> Response:
    try:
        config = FaultConfig.parse(_body(h))
    except FaultConfigError as exc:
        raise invalid(
            "invalid_faults", "Invalid fault configuration", exc.errors
        ) from exc
    h.faults.configure(config)
    log_event(logger, "faults_configured", **config.to_json())
    return 200, h.faults.snapshot(), {}


ROUTES: Routes = [
    (re.compile(r"/admin/quotes/" + segment("symbol")), {"POST": _set_quote}),
    (re.compile(r"/admin/session/close"), {"POST": _close}),
    (re.compile(r"/admin/session/open"), {"POST": _open}),
    (re.compile(r"/admin/stats"), {"GET": _stats}),
    (re.compile(r"/admin/faults"), {"GET": _get_faults, "POST": _set_faults}),
]
