"""Structured logging: one ``key=value`` line per event, to stderr."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


class _UTCFormatter(logging.Formatter):
    """ISO-8601 UTC timestamps with milliseconds: 2024-05-01T12:00:00.123Z."""

    def formatTime(  # logging's API name
        self, record: logging.LogRecord, datefmt: str | None = None
    ) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure(level: int) -> None:
    """Route the package's logs to stderr as logfmt-style lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UTCFormatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _value(value: Any) -> str:
    text = "null" if value is None else str(value)
    # Quote only when needed so the common case stays greppable (key=value).
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def kv(event: str, **fields: Any) -> str:
    """``event=<event> k1=v1 k2=v2`` with values quoted when they contain spaces."""
    parts = [f"event={_value(event)}"]
    parts.extend(f"{key}={_value(value)}" for key, value in fields.items())
    return " ".join(parts)


def log_event(
    logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any
) -> None:
    """Log one structured event line (cheap when the level is disabled)."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", kv(event, **fields))
