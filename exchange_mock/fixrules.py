"""What makes a received FIX message acceptable at the session level: required
tags per MsgType, value formats, no empty or repeated tags. A message that
breaks a rule gets a Reject(3) with the :class:`FieldError`'s
SessionRejectReason(373) and RefTagID(371); it is not processed.

Only the tags the exchange reads are checked; other tags are passed over (a
standard initiator may send fields this venue does not use). Values that are
valid FIX but that this venue does not support (a stop order, a short sale) are
the application's business: an ExecutionReport rejects the order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exchange_mock.fixcodec import Message, parse_utc_timestamp

# SessionRejectReason(373)
INVALID_TAG_NUMBER = 0
REQUIRED_TAG_MISSING = 1
TAG_WITHOUT_VALUE = 4
VALUE_OUT_OF_RANGE = 5
INCORRECT_DATA_FORMAT = 6
COMP_ID_PROBLEM = 9
TAG_REPEATED = 13
OTHER = 99

# A SenderCompID (any is a session) and the exchange's own CompID.
COMP_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
HEADER_REQUIRED = (35, 49, 56, 34, 52)
REQUIRED: dict[str, tuple[int, ...]] = {
    "A": (98, 108),
    "1": (112,),
    "2": (7, 16),
    "3": (45,),
    "4": (36,),
    # Symbol and OrderQty sit in components the FIX 4.4 dictionary marks
    # required; an order cannot be matched without them.
    "D": (11, 55, 54, 38, 40, 60),
    "F": (11, 41, 54, 60),
    "H": (11, 54),
}

_INT = re.compile(r"[0-9]{1,18}")
_FLOAT = re.compile(r"-?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})")
_BOOL = frozenset({"Y", "N"})
INT_TAGS = frozenset({7, 16, 34, 36, 45, 95, 98, 108})
FLOAT_TAGS = frozenset({38, 44})
BOOL_TAGS = frozenset({43, 97, 123, 141})
TIMESTAMP_TAGS = frozenset({52, 60, 122})
# The values FIX 4.4 defines (FIX44.xml), not the ones this venue supports.
ENUMS: dict[int, frozenset[str]] = {
    54: frozenset("123456789ABCDEFG"),
    40: frozenset("12346789DEGIJKLMP"),
    59: frozenset("01234567"),
}
# Tags read by the exchange: each must appear at most once.
SINGLE_TAGS = frozenset(
    {8, 9, 35, 49, 56, 34, 52, 43, 97, 122, 10}
    | {98, 108, 141, 95, 96, 553, 554, 112, 7, 16, 45, 36, 123}
    | {11, 41, 55, 54, 38, 40, 44, 59, 60}
)


@dataclass(frozen=True)
class FieldError:
    """Why a message is refused: SessionRejectReason, the tag, a text."""

    reason: int
    tag: int | None
    text: str


def check(message: Message) -> FieldError | None:
    """The first session-level problem of ``message``, or None."""
    for tag, value in message.fields:
        if value == "":
            return FieldError(TAG_WITHOUT_VALUE, tag, f"tag {tag} has no value")
    for tag in SINGLE_TAGS:
        if message.count(tag) > 1:
            return FieldError(TAG_REPEATED, tag, f"tag {tag} appears more than once")
    for tag in (*HEADER_REQUIRED, *REQUIRED.get(message.msg_type, ())):
        if message.get(tag) is None:
            return FieldError(REQUIRED_TAG_MISSING, tag, f"required tag {tag} missing")
    if message.poss_dup and message.get(122) is None:
        return FieldError(
            REQUIRED_TAG_MISSING, 122, "OrigSendingTime(122) is required with 43=Y"
        )
    for tag, value in message.fields:
        problem = _format_problem(tag, value)
        if problem is not None:
            return problem
    return None


def _format_problem(tag: int, value: str) -> FieldError | None:
    if tag in INT_TAGS and not _INT.fullmatch(value):
        return FieldError(INCORRECT_DATA_FORMAT, tag, f"tag {tag} must be an integer")
    if tag in FLOAT_TAGS and not _FLOAT.fullmatch(value):
        return FieldError(INCORRECT_DATA_FORMAT, tag, f"tag {tag} must be a number")
    if tag in BOOL_TAGS and value not in _BOOL:
        return FieldError(VALUE_OUT_OF_RANGE, tag, f"tag {tag} must be Y or N")
    if tag in TIMESTAMP_TAGS and parse_utc_timestamp(value) is None:
        return FieldError(
            INCORRECT_DATA_FORMAT,
            tag,
            f"tag {tag} must be a UTCTimestamp YYYYMMDD-HH:MM:SS[.sss]",
        )
    allowed = ENUMS.get(tag)
    if allowed is not None and value not in allowed:
        return FieldError(
            VALUE_OUT_OF_RANGE, tag, f"value {value!r} is not valid for tag {tag}"
        )
    return None
