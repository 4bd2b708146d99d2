"""The public API's route handlers (the venue side; see README.md)::

    GET  /healthz                         200 {"status": "ok"}
    GET  /symbols                         200 {"symbols": [...]}
    GET  /quotes                          200 {"quotes": [quote, ...]}
    GET  /quotes/<symbol>                 200 quote | 404 unknown_symbol
    GET  /clock                           200 {"now", "is_open", "session_date", ...}
    GET  /orders[?client_order_id=]       200 {"orders": [...]} in acceptance order
    GET  /orders/<client_order_id>        200 order | 404 unknown_order
    GET  /fix/sessions                    200 {"sessions": [...]}

The first five are the market data, also served alone on the quotes port
(``MARKET_DATA_ROUTES``); the rest is read-only introspection for tests and
operators. Orders enter only through the FIX acceptor
(:mod:`exchange_mock.fixserver`). A handler takes the request (the protocol
:class:`exchange_mock.request.Request`) and the path parameters and returns
(status, payload, headers), or raises a Problem.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs

from exchange_mock.fixstore import FixStateStore
from exchange_mock.problems import Problem
from exchange_mock.request import Request, Response, Routes, segment


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
    client_order_id = params["client_order_id"]
    order = h.exchange.get_order(client_order_id)
    if order is None:
        raise Problem(
            404,
            "unknown_order",
            "Unknown order",
            f"no order with client_order_id {client_order_id!r}",
        )
    return 200, order.to_json(), {}


def _fix_sessions(h: Request, params: dict[str, str]) -> Response:
    """Each FIX session's numbers and how far its report feed has been turned
    into ExecutionReports (test introspection: the broker has booked everything
    once its expected number reaches ``next_out`` and ``feed_cursor`` reaches
    ``feed_last_seq``)."""
    sessions = FixStateStore(h.exchange.store).sessions()
    return (
        200,
        {
            "sessions": [
                {
                    "session_id": session_id,
                    "next_out": state.next_out,
                    "next_in": state.next_in,
                    "feed_cursor": state.feed_cursor,
                    "feed_last_seq": h.exchange.feed.last_seq(session_id),
                }
                for session_id, state in sorted(sessions.items())
            ]
        },
        {},
    )


# Read-only market data: all a client that only prices orders (the broker's api)
# needs, and all the quotes port serves (EXCHANGE_QUOTES_PORT).
MARKET_DATA_ROUTES: Routes = [
    (re.compile(r"/healthz"), {"GET": _healthz}),
    (re.compile(r"/symbols"), {"GET": _symbols}),
    (re.compile(r"/quotes"), {"GET": _quotes}),
    (re.compile(r"/quotes/" + segment("symbol")), {"GET": _quote}),
    (re.compile(r"/clock"), {"GET": _clock}),
]

ROUTES: Routes = [
    *MARKET_DATA_ROUTES,
    (re.compile(r"/orders"), {"GET": _list_orders}),
    (re.compile(r"/orders/" + segment("client_order_id")), {"GET": _get_order}),
    (re.compile(r"/fix/sessions"), {"GET": _fix_sessions}),
]
