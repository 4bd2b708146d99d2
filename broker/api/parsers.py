"""JSON request bodies with bounded nesting.

Python's json module recurses once per nesting level: a body of a thousand ``[``
raises RecursionError, which is no ValueError, so it escaped DRF's parser (and the
idempotency fingerprint) as a 500. Every body this API takes is a flat object, so
anything nested deeper than ``MAX_JSON_DEPTH`` is refused as malformed before it
is decoded: a 400, whatever the interpreter's recursion limit.
"""

from __future__ import annotations

import io
import re

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 16

# A JSON string (skipped whole, brackets inside it do not nest) or one bracket.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_OPENERS = frozenset(b"[{")


def json_too_deep(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if ``raw`` nests arrays/objects more than ``limit`` levels deep. One
    linear scan, no recursion; it stops at the first level too many. Malformed
    input gives some answer and is refused by the decoder anyway."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        first = match.group()[0]
        if first in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif first != ord('"'):
            depth -= 1
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSONParser, refusing bodies nested deeper than ``MAX_JSON_DEPTH``
    (ParseError: 400 ``malformed_request``)."""

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read()
        if json_too_deep(raw):
            raise ParseError(
                f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels"
            )
        return super().parse(io.BytesIO(raw), media_type, parser_context)
