"""RFC 9457 problem responses and JSON request bodies.

Every error is ``application/problem+json`` with ``type``, ``title``, ``status``,
``detail`` and a stable ``code`` that clients switch on; bad input never yields
a 500.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

PROBLEM_TYPE_PREFIX = "urn:exchange-mock:problem:"


class Problem(Exception):
    """An error response (RFC 9457). ``close`` drops the connection afterwards,
    for errors after which the request stream cannot be trusted."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}
        self.close = close

    def to_json(self) -> dict[str, Any]:
        return {
            "type": PROBLEM_TYPE_PREFIX + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
            **self.extra,
        }


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_body(body: bytes) -> Any:
    """Decode a request body; raises a 400 ``invalid_json`` :class:`Problem`."""
    if not body:
        raise Problem(400, "invalid_json", "Malformed JSON", "the body is empty")
    try:
        # parse_float=Decimal: a JSON number never passes through a binary float.
        return json.loads(
            body.decode("utf-8"),
            parse_float=Decimal,
            parse_constant=_refuse_constant,
        )
    except UnicodeDecodeError as exc:
        raise Problem(
            400, "invalid_json", "Malformed JSON", "the body is not UTF-8"
        ) from exc
    # ValueError covers JSONDecodeError and ints beyond the digit limit;
    # RecursionError a pathologically nested document.
    except (ValueError, RecursionError) as exc:
        raise Problem(
            400, "invalid_json", "Malformed JSON", f"the body is not JSON: {exc}"
        ) from exc


def invalid(code: str, title: str, errors: dict[str, list[str]]) -> Problem:
    """A 400 with per-field ``errors``."""
    summary = "; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items())
    return Problem(400, code, title, summary, extra={"errors": errors})
