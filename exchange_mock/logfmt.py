"""Structured logging: one ``key=value`` line per event, to stderr; one JSON
object per line instead with ``LOG_FORMAT=json`` (as every role of the project)."""

from __future__ import annotations

import json
import logging
import os
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


class _JsonFormatter(_UTCFormatter):
    """``{"ts", "level", "logger", "event", <fields>}``; a plain log line (from a
    library) keeps its text under ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
        }
        line.update(getattr(record, "event_fields", None) or {})
        if "event" not in line:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: int) -> None:
    """Route the package's logs to stderr: logfmt-style lines, or JSON objects
    when ``LOG_FORMAT=json``."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LOG_FORMAT", "text").strip().lower() == "json":
        handler.setFormatter(_JsonFormatter())
    else:
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
        logger.log(
            level,
            "%s",
            kv(event, **fields),
            extra={"event_fields": {"event": event, **fields}},
        )
