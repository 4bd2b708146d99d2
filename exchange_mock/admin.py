"""Operator and test controls::

    POST /admin/quotes/<symbol>   {"last"?, "size"?}  200 quote, matching done
    POST /admin/session/close     200 clock (open day orders expired)
    POST /admin/session/open      200 clock (resting orders matched)
    GET  /admin/stats             200 {"orders", "open_orders", "connections"}
    GET  /admin/faults            200 {"config", "counters"}
    POST /admin/faults            {...} replaces the config ({} clears) -> 200

Fault injection never applies here, so the operator can always clear it. An
empty body counts as ``{}``. With ``EXCHANGE_ADMIN_TOKEN`` set (required unless
the exchange binds a loopback address) every ``/admin`` path needs
``Authorization: Bearer <token>``: 401 ``unauthorized`` otherwise, before
routing.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from exchange_mock.config import ADMIN_TOKEN_ENV
from exchange_mock.faults import FaultConfig, FaultConfigError
from exchange_mock.logfmt import log_event
from exchange_mock.orders import MAX_PRICE, MAX_QUANTITY, QUANTITY_STEP
from exchange_mock.problems import Problem, invalid, parse_json_body
from exchange_mock.quotes import MIN_MID
from exchange_mock.request import Request, Response, Routes, segment
from exchange_mock.wire import CENT, parse_decimal

logger = logging.getLogger(__name__)

PREFIX = "/admin"


def is_admin_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def authorize(h: Request, token: str | None) -> None:
    """Nothing if ``token`` is None (open admin) or the request carries it as a
    bearer token; else a 401 ``unauthorized`` problem. Compared in constant
    time."""
    if token is None:
        return
    scheme, _, sent = (h.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        sent.strip().encode(), token.encode()
    ):
        return
    raise Problem(
        401,
        "unauthorized",
        "Unauthorized",
        "the admin routes need Authorization: Bearer <EXCHANGE_ADMIN_TOKEN>",
        headers={"WWW-Authenticate": 'Bearer realm="exchange-admin"'},
    )


def admin_headers(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a client of these routes sends: the bearer token of
    ``EXCHANGE_ADMIN_TOKEN`` when the environment sets one (the exchange started
    from that environment then requires it), else nothing."""
    token = (os.environ if env is None else env).get(ADMIN_TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


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
