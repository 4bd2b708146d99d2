"""FIX 4.4 framing and codec: bytes off a socket into messages, messages into
bytes.

Framing is done here, before any parsing, because simplefix (the codec) trusts
what it is given: it splits a frame at ``10=`` and checks neither BodyLength(9)
nor CheckSum(10). :class:`Framer` finds ``8=FIX.4.4<SOH>9=<n><SOH>``, takes
exactly ``n`` body bytes, requires ``10=<3 digits><SOH>`` right after them and
checks the sum. Anything else is :class:`Garbage`: reported (the session records
it) and dropped, never raised. After a bad BodyLength the framer resynchronises
at the next ``8=FIX.4.4<SOH>``, so a wrong length never swallows the message
behind it; a frame whose length is right but whose sum is wrong is dropped
whole. simplefix then only splits a verified frame into tag=value pairs
(:func:`decode`) and builds outgoing messages, computing 9 and 10
(:func:`encode`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import simplefix
import simplefix.errors

SOH = b"\x01"
BEGIN_STRING = "FIX.4.4"
BEGIN = b"8=" + BEGIN_STRING.encode() + SOH
TRAILER_LENGTH = len(b"10=000\x01")
# A body this long is not an order-entry message: garbage (and a bound on what a
# peer can make us buffer).
MAX_BODY_LENGTH = 64 * 1024
_BODY_LENGTH = re.compile(rb"9=([0-9]{1,6})\x01")
_TRAILER = re.compile(rb"10=([0-9]{3})\x01")
# The longest "9=<n><SOH>" we accept, to tell "not arrived yet" from "malformed".
_MAX_BODY_LENGTH_FIELD = len(b"9=999999\x01")
_SEQ_NUM = re.compile(rb"\x0134=([0-9]{1,18})\x01")
_MSG_TYPE = re.compile(rb"\x0135=([^\x01]{1,8})\x01")
# UTCTimestamp: YYYYMMDD-HH:MM:SS with optional milli/micro/nanoseconds.
_TIMESTAMP = re.compile(
    r"([0-9]{8})-([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{3,9}))?"
)


@dataclass(frozen=True)
class Garbage:
    """Bytes that are not a well-framed FIX 4.4 message, and why."""

    data: bytes
    reason: str


def checksum(data: bytes) -> int:
    """CheckSum(10): the byte sum of everything before ``10=``, modulo 256."""
    return sum(data) % 256


class Framer:
    """Cuts a byte stream into verified frames and garbage, in stream order.

    Not thread-safe (one per connection, fed by its reader).
    """

    def __init__(self, max_body_length: int = MAX_BODY_LENGTH) -> None:
        self._buffer = b""
        self._max_body_length = max_body_length

    def feed(self, data: bytes) -> list[bytes | Garbage]:
        """Add ``data``; returns the frames (whole messages, trailer included)
        and garbage now complete. Incomplete bytes stay buffered."""
        self._buffer += data
        items: list[bytes | Garbage] = []
        while True:
            item = self._cut()
            if item is None:
                return items
            items.append(item)

    def _cut(self) -> bytes | Garbage | None:
        buffer = self._buffer
        start = buffer.find(BEGIN)
        if start < 0:
            # Keep a tail that may still become the start of a BeginString.
            keep = _partial_begin(buffer)
            if len(buffer) - keep == 0:
                return None
            return self._drop(len(buffer) - keep, "no BeginString 8=FIX.4.4")
        if start > 0:
            return self._drop(start, "bytes before BeginString")
        length = _BODY_LENGTH.match(buffer, len(BEGIN))
        if length is None:
            rest = buffer[len(BEGIN) : len(BEGIN) + _MAX_BODY_LENGTH_FIELD]
            if SOH not in rest and len(rest) < _MAX_BODY_LENGTH_FIELD:
                return None  # "9=<n><SOH>" has not fully arrived
            return self._resync("BodyLength(9) missing or malformed")
        body_length = int(length[1])
        if body_length > self._max_body_length:
            return self._resync(f"BodyLength {body_length} above the maximum")
        body_start = length.end()
        trailer_at = body_start + body_length
        end = trailer_at + TRAILER_LENGTH
        if len(buffer) < end:
            # A new message starting inside the claimed body means the length is
            # wrong: say so now instead of waiting for bytes that may never come.
            if buffer.find(SOH + BEGIN, body_start - 1) >= 0:
                return self._resync(f"BodyLength {body_length} runs into the next")
            return None
        trailer = _TRAILER.fullmatch(buffer, trailer_at, end)
        if trailer is None or buffer[trailer_at - 1 : trailer_at] != SOH:
            return self._resync(f"BodyLength {body_length} does not end at 10=")
        expected = checksum(buffer[:trailer_at])
        if int(trailer[1]) != expected:
            return self._drop(
                end, f"CheckSum {trailer[1].decode()} != computed {expected:03d}"
            )
        self._buffer = buffer[end:]
        return buffer[:end]

    def _drop(self, count: int, reason: str) -> Garbage:
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return Garbage(data, reason)

    def _resync(self, reason: str) -> Garbage:
        """Drop up to the next BeginString after the current one (or everything
        that cannot start one)."""
        following = self._buffer.find(BEGIN, 1)
        if following < 0:
            following = len(self._buffer) - _partial_begin(self._buffer[1:])
        return self._drop(following, reason)


def _partial_begin(buffer: bytes) -> int:
    """Length of the longest tail of ``buffer`` that is a proper prefix of BEGIN."""
    for size in range(min(len(BEGIN) - 1, len(buffer)), 0, -1):
        if BEGIN.startswith(buffer[-size:]):
            return size
    return 0


class DecodeError(ValueError):
    """A verified frame that still cannot be split into tag=value pairs.

    ``seq_num``/``msg_type``: read from the raw bytes when possible, so the
    session can answer with a Reject (which needs RefSeqNum).
    """

    def __init__(
        self, reason: str, seq_num: int | None, msg_type: str | None, tag: int | None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq_num = seq_num
        self.msg_type = msg_type
        self.tag = tag


@dataclass(frozen=True)
class Message:
    """A decoded message: its fields in wire order (values as text) and the raw
    frame."""

    fields: tuple[tuple[int, str], ...]
    raw: bytes

    def get(self, tag: int) -> str | None:
        """The first value of ``tag``, or None."""
        for number, value in self.fields:
            if number == tag:
                return value
        return None

    def count(self, tag: int) -> int:
        return sum(1 for number, _ in self.fields if number == tag)

    @property
    def msg_type(self) -> str:
        return self.get(35) or ""

    @property
    def seq_num(self) -> int | None:
        """MsgSeqNum(34) if present and a positive integer, else None."""
        raw = self.get(34)
        if raw is None or not raw.isdigit() or len(raw) > 18:
            return None
        value = int(raw)
        return value if value > 0 else None

    @property
    def poss_dup(self) -> bool:
        return self.get(43) == "Y"

    def __str__(self) -> str:
        return printable(self.raw)


def decode(frame: bytes) -> Message:
    """Split one verified frame (from :class:`Framer`) into fields with simplefix.

    Raises :class:`DecodeError` for a frame simplefix cannot split (a tag that is
    not a number, a bad raw-data length) or that holds more than one message.
    Empty values are kept (as ``""``) so the session can reject them by tag.
    """
    parser = simplefix.FixParser(allow_empty_values=True)
    parser.append_buffer(frame)
    try:
        parsed = parser.get_message()
    except simplefix.errors.ParsingError as exc:
        raise _decode_error(frame, f"unparseable: {type(exc).__name__}") from exc
    except ValueError as exc:  # simplefix raises bare ValueErrors too
        raise _decode_error(frame, f"unparseable: {exc}") from exc
    if parsed is None or parser.get_buffer():
        raise _decode_error(frame, "not exactly one message")
    fields = tuple((int(tag), value.decode("latin-1")) for tag, value in parsed.pairs)
    return Message(fields, frame)


def _decode_error(frame: bytes, reason: str) -> DecodeError:
    seq = _SEQ_NUM.search(frame)
    msg_type = _MSG_TYPE.search(frame)
    return DecodeError(
        reason,
        int(seq[1]) if seq and int(seq[1]) > 0 else None,
        msg_type[1].decode("latin-1") if msg_type else None,
        None,
    )


Fields = Sequence[tuple[int, object]]


def encode(
    msg_type: str,
    *,
    sender: str,
    target: str,
    seq_num: int,
    sending_time: str,
    body: Iterable[tuple[int, object]] = (),
    orig_sending_time: str | None = None,
) -> bytes:
    """One message on the wire. Header order 8, 9, 35, 49, 56, 34, 52, then
    PossDupFlag(43)=Y and OrigSendingTime(122) when ``orig_sending_time`` is
    given (a retransmission); the body fields in the given order; simplefix
    computes BodyLength and CheckSum."""
    message = simplefix.FixMessage()
    message.append_pair(8, BEGIN_STRING)
    message.append_pair(35, msg_type)
    message.append_pair(49, sender)
    message.append_pair(56, target)
    message.append_pair(34, seq_num)
    message.append_pair(52, sending_time)
    if orig_sending_time is not None:
        message.append_pair(43, "Y")
        message.append_pair(122, orig_sending_time)
    for tag, value in body:
        message.append_pair(tag, value)
    return message.encode()


def garble(frame: bytes) -> bytes:
    """``frame`` with one body byte changed, so its CheckSum no longer matches
    while its framing (BodyLength, trailer) stays intact: the receiver sees a
    message that fails the sum, not a stream it cannot resynchronise."""
    trailer_at = len(frame) - TRAILER_LENGTH
    body_start = _BODY_LENGTH.match(frame, len(BEGIN))
    start = body_start.end() if body_start else len(BEGIN)
    # The middle of the body, moved off delimiters so tag=value stays readable.
    position = (start + trailer_at) // 2
    while frame[position : position + 1] in (SOH, b"=") and position > start:
        position -= 1
    replacement = b"X" if frame[position : position + 1] != b"X" else b"Y"
    return frame[:position] + replacement + frame[position + 1 :]


def utc_timestamp(moment: datetime) -> str:
    """UTCTimestamp with milliseconds: ``YYYYMMDD-HH:MM:SS.sss``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def parse_utc_timestamp(text: str) -> datetime | None:
    """The moment of a UTCTimestamp (seconds, milli, micro or nano), or None
    if ``text`` is not one."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return None
    day, hour, minute, second, fraction = match.groups()
    if fraction is not None and len(fraction) not in (3, 6, 9):
        return None
    try:
        return datetime.strptime(
            f"{day}{hour}{minute}{second}", "%Y%m%d%H%M%S"
        ).replace(
            tzinfo=UTC,
            microsecond=int((fraction or "0").ljust(9, "0")[:6]),
        )
    except ValueError:
        return None


def printable(raw: bytes, limit: int = 512) -> str:
    """``raw`` for a log line: SOH as ``|``, other control bytes escaped,
    truncated to ``limit`` bytes."""
    text = raw[:limit].replace(SOH, b"|").decode("latin-1")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text + ("..." if len(raw) > limit else "")
