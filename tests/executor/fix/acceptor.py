"""A FIX acceptor the test drives by hand: it listens on a free port, records every
message it receives and sends exactly what the test tells it to (any sequence
number, gaps, duplicates, garbage). The session layer's rules are tested against
it; conformance to the standard is proven against QuickFIX (tests/interop)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from devstack.wait import wait_until
from executor.fix.codec import Framer, Garbled, Message, MsgType, Tag, encode

ACCEPTOR = "EXCHANGE"


class ScriptedAcceptor:
    def __init__(self, initiator: str = "BROKER-0") -> None:
        self.initiator = initiator
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(4)
        self.port = self._server.getsockname()[1]
        self.received: list[Message] = []
        self.garbage: list[Garbled] = []
        self.connections = 0
        self.next_out = 1
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- what the test sees -----------------------------------------------------

    def wait_for(
        self, predicate: Callable[[Message], bool], what: str, timeout: float = 10
    ) -> Message:
        def find() -> Message | None:
            with self._lock:
                return next((m for m in self.received if predicate(m)), None)

        return wait_until(find, timeout=timeout, what=what)

    def wait_type(self, msg_type: str, timeout: float = 10, after: int = 0) -> Message:
        return self.wait_for(
            lambda m: m.msg_type == msg_type and (m.seq or 0) > after,
            what=f"MsgType {msg_type} after seq {after}",
            timeout=timeout,
        )

    def of_type(self, msg_type: str) -> list[Message]:
        with self._lock:
            return [m for m in self.received if m.msg_type == msg_type]

    def wait_connected(self, count: int = 1, timeout: float = 10) -> None:
        wait_until(
            lambda: self.connections >= count and self._conn is not None,
            timeout=timeout,
            what=f"connection #{count}",
        )

    # -- what the test makes it do --------------------------------------------

    def send(
        self,
        msg_type: str,
        body: list[tuple[int, object]] = (),
        *,
        seq: int | None = None,
        poss_dup: bool = False,
        orig_sending_time: str | None = None,
    ) -> int:
        """Send one message numbered ``seq`` (default: the next); returns it."""
        number = self.next_out if seq is None else seq
        if seq is None or seq >= self.next_out:
            self.next_out = number + 1
        self.send_raw(
            encode(
                msg_type=msg_type,
                sender=ACCEPTOR,
                target=self.initiator,
                seq=number,
                body=list(body),
                poss_dup=poss_dup,
                orig_sending_time=orig_sending_time,
            )
        )
        return number

    def send_raw(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None, "no connection"
        conn.sendall(data)

    def logon(self, heartbeat: int = 30, seq: int | None = None) -> None:
        self.send(
            MsgType.LOGON,
            [(Tag.ENCRYPT_METHOD, 0), (Tag.HEART_BT_INT, heartbeat)],
            seq=seq,
        )

    def drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def close(self) -> None:
        self._closed.set()
        self.drop_connection()
        self._server.close()
        self._thread.join(5)

    # -- the listener -----------------------------------------------------------

    def _serve(self) -> None:
        self._server.settimeout(0.1)
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            self.drop_connection()
            self._conn = conn
            self.connections += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        framer = Framer()
        conn.settimeout(0.1)
        while not self._closed.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            for item in framer.feed(data):
                with self._lock:
                    if isinstance(item, Garbled):
                        self.garbage.append(item)
                    else:
                        self.received.append(item)
            time.sleep(0)
