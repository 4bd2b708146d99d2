"""What a route handler sees of a request, and the routing types.

The handlers in :mod:`exchange_mock.routes` and :mod:`exchange_mock.admin` take a
:class:`Request` (a protocol, not the HTTP transport's handler class), so they
import nothing from :mod:`exchange_mock.server`; the server imports them and
passes its request handler, which satisfies the protocol.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from email.message import Message

    from exchange_mock.engine import Exchange
    from exchange_mock.faults import Faults


class Request(Protocol):
    """One request as a handler sees it (read-only)."""

    @property
    def exchange(self) -> Exchange:
        """The exchange the server serves."""
        ...

    @property
    def faults(self) -> Faults:
        """The server's fault injection."""
        ...

    @property
    def connection_count(self) -> int:
        """The server's open connections, now."""
        ...

    @property
    def headers(self) -> Message:
        """The request headers."""
        ...

    @property
    def query(self) -> str:
        """The raw query string (without ``?``)."""
        ...

    @property
    def body(self) -> bytes:
        """The whole request body (``b""`` when there is none)."""
        ...


Response = tuple[int, dict[str, Any], dict[str, str]]
Handler = Callable[[Request, dict[str, str]], Response]
Routes = list[tuple[re.Pattern[str], dict[str, Handler]]]


def segment(name: str) -> str:
    """A path parameter: one non-empty path segment."""
    return rf"(?P<{name}>[^/]+)"
