"""The public API's route handlers (the venue side; see README.md)::

    GET  /healthz                         200 {"status": "ok"}
    GET  /symbols                         200 {"symbols": [...]}
    GET  /quotes                          200 {"quotes": [quote, ...]}
    GET  /quotes/<symbol>                 200 quote | 404 unknown_symbol
    GET  /clock                           200 {"now", "is_open", "session_date", ...}
    POST /orders                    [F?]  201 new order | 200 same order (resend)
    GET  /orders[?client_order_id=]       200 {"orders": [...]} in acceptance order
    GET  /orders/<client_order_id>        200 order | 404 unknown_order
    POST /orders/<cid>/cancel       [F?]  200 order | 404 unknown_order
    POST /sessions/<id>/logon             200 {"session_id", "epoch", "last_seq"}
    GET  /sessions/<id>/reports     [F?]  200 {"reports": [...], "last_seq"}

[F?]: fenced when ``X-Session`` and ``X-Epoch`` are sent (409 ``stale_epoch``,
400 ``invalid_session``). A handler takes the request (the protocol
:class:`exchange_mock.request.Request`) and the path parameters and returns
(status, payload, headers), or raises a Problem.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs

from exchange_mock.engine import (
    DuplicateOrderConflict,
    UnknownOrderError,
    UnknownSymbolError,
)
from exchange_mock.feed import DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_SECONDS
from exchange_mock.logfmt import log_event
from exchange_mock.orders import OrderValidationError, parse_order_request
from exchange_mock.problems import Problem, invalid, parse_json_body
from exchange_mock.request import Request, Response, Routes, segment
from exchange_mock.sessions import (
    EPOCH_HEADER,
    SESSION_HEADER,
    Fence,
    InvalidSession,
    StaleEpoch,
    parse_epoch,
    parse_fence,
    parse_session_id,
)

logger = logging.getLogger(__name__)

_INT_RE = re.compile(r"[0-9]{1,19}")
_SECONDS_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")


# --- sessions: fences and problems ---


def request_fence(h: Request) -> Fence | None:
    """The request's fence from its headers (None: unfenced)."""
    try:
        return parse_fence(h.headers.get(SESSION_HEADER), h.headers.get(EPOCH_HEADER))
    except InvalidSession as exc:
        raise Problem(400, "invalid_session", "Invalid session", str(exc)) from exc


def path_session(params: dict[str, str]) -> str:
    try:
        return parse_session_id(params["session_id"])
    except InvalidSession as exc:
        raise Problem(400, "invalid_session", "Invalid session", str(exc)) from exc


def stale_epoch(exc: StaleEpoch) -> Problem:
    return Problem(
        409,
        "stale_epoch",
        "Stale epoch",
        f"session {exc.session_id!r} is at epoch {exc.current}; a request with "
        f"epoch {exc.epoch} is refused and nothing was done",
        extra={
            "session_id": exc.session_id,
            "epoch": exc.epoch,
            "current_epoch": exc.current,
        },
    )


def unknown_order(client_order_id: str) -> Problem:
    return Problem(
        404,
        "unknown_order",
        "Unknown order",
        f"no order with client_order_id {client_order_id!r}",
    )


# --- handlers ---


def _healthz(h: Request, params: dict[str, str]) -> Response:
    return 200, {"status": "ok"}, {}


def _symbols(h: Request, params: dict[str, str]) -> Response:
    return 200, {"symbols": list(h.exchange.quotes.symbols)}, {}


def _quotes(h: Request, params: dict[str, str]) -> Response:
    quotes = h.exchange.quotes.snapshot()
    return 200, {"quotes": [q.to_json() for q in quotes.values()]}, {}


def _quote(h: Request, params: dict[str, str]) -> Response:
    quote = h.exchange.quotes.get(params["symbol"])
    if quote is None:
        raise Problem(
            404,
            "unknown_symbol",
            "Unknown symbol",
            f"the exchange does not list {params['symbol']!r}",
        )
    return 200, quote.to_json(), {}


def _clock(h: Request, params: dict[str, str]) -> Response:
    return 200, h.exchange.clock_status(), {}


def _list_orders(h: Request, params: dict[str, str]) -> Response:
    query = parse_qs(h.query)
    orders = h.exchange.list_orders()
    if "client_order_id" in query:
        wanted = set(query["client_order_id"])
        orders = [o for o in orders if o.client_order_id in wanted]
    return 200, {"orders": [o.to_json() for o in orders]}, {}


def _get_order(h: Request, params: dict[str, str]) -> Response:
    order = h.exchange.get_order(params["client_order_id"])
    if order is None:
        raise unknown_order(params["client_order_id"])
    return 200, order.to_json(), {}


def _post_order(h: Request, params: dict[str, str]) -> Response:
    fence = request_fence(h)
    try:
        request = parse_order_request(parse_json_body(h.body))
    except OrderValidationError as exc:
        log_event(logger, "order_invalid", errors=str(exc))
        raise Problem(
            400,
            "invalid_order",
            "Invalid order",
            f"the order is malformed: {exc}",
            extra={"errors": exc.errors},
        ) from exc
    try:
        result = h.exchange.submit(request, fence)
    except StaleEpoch as exc:
        raise stale_epoch(exc) from exc
    except UnknownSymbolError as exc:
        raise Problem(
            422,
            "unknown_symbol",
            "Unknown symbol",
            f"the exchange does not list {exc.symbol!r}; nothing was stored",
        ) from exc
    except DuplicateOrderConflict as exc:
        existing = exc.existing
        # Another session's order is not shown: a session only sees its own.
        raise Problem(
            409,
            "duplicate_client_order_id",
            "Duplicate client_order_id",
            f"client_order_id {existing.client_order_id!r} belongs to "
            + (
                f"order {existing.order_id} with other parameters"
                if exc.same_session
                else "an order of another session"
            ),
            extra={"order": existing.to_json()} if exc.same_session else None,
        ) from exc
    headers = {"Location": f"/orders/{result.order.client_order_id}"}
    if result.created:
        return 201, result.order.to_json(), headers
    # A resend: same order, no new execution. The header makes replays visible.
    return 200, result.order.to_json(), {**headers, "Idempotent-Replayed": "true"}


def _cancel_order(h: Request, params: dict[str, str]) -> Response:
    fence = request_fence(h)
    try:
        order = h.exchange.cancel(params["client_order_id"], fence)
    except StaleEpoch as exc:
        raise stale_epoch(exc) from exc
    except UnknownOrderError as exc:
        raise unknown_order(exc.client_order_id) from exc
    return 200, order.to_json(), {}


def _logon(h: Request, params: dict[str, str]) -> Response:
    session_id = path_session(params)
    body = parse_json_body(h.body)
    if not isinstance(body, dict):
        raise invalid(
            "invalid_session", "Invalid logon", {"body": ["must be a JSON object"]}
        )
    errors = {name: ["unknown field"] for name in sorted(set(body) - {"epoch"})}
    epoch = 0
    if body.get("epoch") is None:
        errors["epoch"] = ["is required"]
    else:
        try:
            epoch = parse_epoch(body["epoch"])
        except InvalidSession as exc:
            errors["epoch"] = [str(exc)]
    if errors:
        raise invalid("invalid_session", "Invalid logon", errors)
    try:
        epoch, last_seq = h.exchange.logon(session_id, epoch)
    except StaleEpoch as exc:
        raise stale_epoch(exc) from exc
    log_event(logger, "logon", session=session_id, epoch=epoch, last_seq=last_seq)
    return 200, {"session_id": session_id, "epoch": epoch, "last_seq": last_seq}, {}


def _reports(h: Request, params: dict[str, str]) -> Response:
    session_id = path_session(params)
    fence = request_fence(h)
    if fence is not None and fence.session_id != session_id:
        raise Problem(
            400,
            "invalid_session",
            "Invalid session",
            f"{SESSION_HEADER} {fence.session_id!r} is not the session of the "
            f"path, {session_id!r}",
        )
    query = parse_qs(h.query)
    after = _query_int(query, "after", 0)
    # Larger limits and waits are capped rather than refused: a page may always
    # be shorter than asked, and a long-poll may always return early.
    limit = min(_query_int(query, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    if limit < 1:
        raise _bad_query("limit", "must be at least 1")
    wait = min(_query_seconds(query, "wait"), MAX_WAIT_SECONDS)
    try:
        reports, last_seq = h.exchange.read_reports(
            session_id, after, limit, wait, fence
        )
    except StaleEpoch as exc:
        raise stale_epoch(exc) from exc
    return 200, {"reports": reports, "last_seq": last_seq}, {}


def _bad_query(name: str, message: str) -> Problem:
    return invalid("invalid_query", "Invalid query parameter", {name: [message]})


def _query_int(query: dict[str, list[str]], name: str, default: int) -> int:
    if name not in query:
        return default
    raw = query[name][-1]
    if not _INT_RE.fullmatch(raw):
        raise _bad_query(name, "must be a non-negative integer")
    return int(raw)


def _query_seconds(query: dict[str, list[str]], name: str) -> float:
    if name not in query:
        return 0.0
    raw = query[name][-1]
    if not _SECONDS_RE.fullmatch(raw):
        raise _bad_query(name, "must be a non-negative number of seconds")
    return float(raw)


ROUTES: Routes = [
    (re.compile(r"/healthz"), {"GET": _healthz}),
    (re.compile(r"/symbols"), {"GET": _symbols}),
    (re.compile(r"/quotes"), {"GET": _quotes}),
    (re.compile(r"/quotes/" + segment("symbol")), {"GET": _quote}),
    (re.compile(r"/clock"), {"GET": _clock}),
    (re.compile(r"/orders"), {"GET": _list_orders, "POST": _post_order}),
    (re.compile(r"/orders/" + segment("client_order_id")), {"GET": _get_order}),
    (
        re.compile(r"/orders/" + segment("client_order_id") + "/cancel"),
        {"POST": _cancel_order},
    ),
    (re.compile(r"/sessions/" + segment("session_id") + "/logon"), {"POST": _logon}),
    (
        re.compile(r"/sessions/" + segment("session_id") + "/reports"),
        {"GET": _reports},
    ),
]
