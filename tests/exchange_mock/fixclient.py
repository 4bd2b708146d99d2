"""A raw FIX 4.4 client for the acceptor's tests: simplefix builds what it
sends, and it frames what it receives by itself (BodyLength, CheckSum checked,
independently of exchange_mock.fixcodec) so a test sees garbled frames as
garbled. Not a session layer: numbers are whatever the test says, nothing is
answered automatically."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import simplefix

SOH = b"\x01"
_HEAD = re.compile(rb"8=FIX\.4\.4\x019=([0-9]+)\x01")


def timestamp(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


@dataclass
class Received:
    """One frame from the acceptor: its fields (first value per tag) in order,
    the raw bytes and whether its CheckSum held."""

    raw: bytes
    checksum_ok: bool
    pairs: list[tuple[int, str]] = field(default_factory=list)

    def get(self, tag: int) -> str | None:
        for number, value in self.pairs:
            if number == tag:
                return value
        return None

    @property
    def type(self) -> str | None:
        return self.get(35)

    @property
    def seq(self) -> int:
        return int(self.get(34) or 0)

    def __repr__(self) -> str:
        return self.raw.replace(SOH, b"|").decode("latin-1")


class FixTestClient:
    def __init__(
        self,
        port: int,
        sender: str = "BROKER-0",
        target: str = "EXCHANGE",
        host: str = "127.0.0.1",
    ) -> None:
        self.sender = sender
        self.target = target
        self.sock = socket.create_connection((host, port), timeout=5)
        self.next_out = 1
        self.received: list[Received] = []
        self._buffer = b""
        self._eof = False

    # --- sending ---

    def build(
        self,
        msg_type: str,
        fields: list[tuple[int, object]] = (),
        *,
        seq: int | None = None,
        poss_dup: bool = False,
        sending_time: str | None = None,
    ) -> bytes:
        message = simplefix.FixMessage()
        message.append_pair(8, "FIX.4.4")
        message.append_pair(35, msg_type)
        message.append_pair(49, self.sender)
        message.append_pair(56, self.target)
        message.append_pair(34, self.next_out if seq is None else seq)
        now = sending_time or timestamp()
        message.append_pair(52, now)
        if poss_dup:
            message.append_pair(43, "Y")
            message.append_pair(122, now)
        for tag, value in fields:
            message.append_pair(tag, value)
        return message.encode()

    def send(
        self,
        msg_type: str,
        fields: list[tuple[int, object]] = (),
        *,
        seq: int | None = None,
        poss_dup: bool = False,
        sending_time: str | None = None,
    ) -> bytes:
        """Send one message numbered ``seq`` (default: the next; sending the
        next number advances it)."""
        data = self.build(
            msg_type, fields, seq=seq, poss_dup=poss_dup, sending_time=sending_time
        )
        if seq is None or seq == self.next_out:
            self.next_out += 1
        self.sock.sendall(data)
        return data

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def logon(
        self,
        *,
        epoch: int | None = None,
        heartbeat: int = 30,
        reset: bool = False,
        username: str | None = None,
        password: str | None = None,
        seq: int | None = None,
        expect: bool = True,
    ) -> Received | None:
        fields: list[tuple[int, object]] = [(98, 0), (108, heartbeat)]
        if epoch is not None:
            raw = f"epoch={epoch}"
            fields += [(95, len(raw)), (96, raw)]
        if reset:
            fields.append((141, "Y"))
        if username is not None:
            fields.append((553, username))
        if password is not None:
            fields.append((554, password))
        self.send("A", fields, seq=seq)
        return self.expect("A") if expect else None

    def order(
        self,
        cl_ord_id: str,
        *,
        symbol: str = "AAPL",
        side: str = "1",
        quantity: str = "10",
        price: str | None = None,
        tif: str | None = None,
        extra: list[tuple[int, object]] = (),
        **kwargs,
    ) -> bytes:
        fields: list[tuple[int, object]] = [
            (11, cl_ord_id),
            (21, 1),
            (55, symbol),
            (54, side),
            (60, timestamp()),
            (38, quantity),
            (40, "1" if price is None else "2"),
        ]
        if price is not None:
            fields.append((44, price))
        if tif is not None:
            fields.append((59, tif))
        return self.send("D", fields + list(extra), **kwargs)

    # --- receiving ---

    def receive(self, timeout: float = 5.0) -> Received | None:
        """The next frame, or None if none arrives in ``timeout`` seconds or the
        connection is closed."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._cut()
            if frame is not None:
                self.received.append(frame)
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                data = b""
            if not data:
                self._eof = True
            self._buffer += data

    def expect(
        self, msg_type: str, timeout: float = 5.0, skip: tuple[str, ...] = ("0",)
    ) -> Received:
        """The next frame, which must be of ``msg_type`` (``skip`` types
        before it are passed over)."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.receive(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(
                    f"no {msg_type} within {timeout}s; received {self.received}"
                )
            if frame.type in skip and msg_type not in skip:
                continue
            assert frame.type == msg_type, f"expected {msg_type}, got {frame!r}"
            return frame

    def collect(self, count: int, timeout: float = 5.0) -> list[Received]:
        """The next ``count`` frames other than heartbeats."""
        deadline = time.monotonic() + timeout
        frames: list[Received] = []
        while len(frames) < count:
            frame = self.receive(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"{len(frames)} of {count} frames: {frames}")
            if frame.type != "0":
                frames.append(frame)
        return frames

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the acceptor closes the connection (frames before the EOF
        are kept in ``received``)."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            if self.receive(max(0.0, deadline - time.monotonic())) is None and (
                time.monotonic() >= deadline
            ):
                return self._eof
        return True

    def close(self) -> None:
        self.sock.close()

    def _cut(self) -> Received | None:
        head = _HEAD.search(self._buffer)
        if head is None:
            return None
        end = head.end() + int(head[1]) + len(b"10=000\x01")
        if len(self._buffer) < end:
            return None
        raw = self._buffer[head.start() : end]
        self._buffer = self._buffer[end:]
        body = raw[: -len(b"10=000\x01")]
        trailer = raw[len(body) :]
        ok = trailer[:3] == b"10=" and int(trailer[3:6]) == sum(body) % 256
        parser = simplefix.FixParser()
        parser.append_buffer(raw)
        message = parser.get_message()
        pairs = [(int(tag), value.decode("latin-1")) for tag, value in message.pairs]
        return Received(raw, ok, pairs)
