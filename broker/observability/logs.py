"""One JSON object per log line (``LOG_FORMAT=json``). The project logs
``key=value`` pairs in its messages (``trade=... customer=... topic=... epoch=...``);
they are lifted into fields of their own so a log pipeline can filter on them."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_PAIR = re.compile(r"(?<![\w.])([a-z_]+)=([^\s,]+)")
_RESERVED = {"ts", "level", "logger", "message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in _PAIR.findall(message):
            if key not in _RESERVED:
                line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
