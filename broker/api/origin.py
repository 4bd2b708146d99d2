"""Where an API request came from, as the trade's timeline shows it: method and
path, the Idempotency-Key, the peer address (and the proxies' X-Forwarded-For, as
sent: the client can write it) and the user agent. Bounded and printable, so no
header can bloat the trade's rows or fail their insert."""

from __future__ import annotations

from rest_framework.request import Request

from broker.api.idempotency import HEADER as IDEMPOTENCY_HEADER

MAX_HEADER_CHARS = 200


def _printable(value: str) -> str:
    # Control characters (a NUL would not even fit in a jsonb column) dropped.
    return "".join(ch for ch in value[:MAX_HEADER_CHARS] if ch.isprintable())


def request_origin(request: Request) -> dict[str, str]:
    def header(name: str) -> str:
        return _printable(request.headers.get(name, ""))

    origin = {
        "method": request.method,
        "path": _printable(request.path),
        "idempotency_key": header(IDEMPOTENCY_HEADER),
        "peer": request.META.get("REMOTE_ADDR", ""),
        "forwarded_for": header("X-Forwarded-For"),
        "user_agent": header("User-Agent"),
    }
    return {name: value for name, value in origin.items() if value}
