"""The FIX 4.4 acceptor: a listening socket next to the HTTP server, one
:class:`~exchange_mock.fixsession.FixConnection` per accepted connection, the
sessions by SenderCompID, the credentials, the counters, and a graceful stop.

Any SenderCompID of 1-64 characters from ``A-Z a-z 0-9 . _ -`` is a session,
created at its first Logon addressed to this exchange's CompID. A stop sends
every logged-on peer a Logout, waits (bounded) for the answers, then closes
what is left.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
import time
from collections import Counter
from typing import Any

from exchange_mock.engine import Exchange
from exchange_mock.faults import Faults
from exchange_mock.fixapp import FixApplication
from exchange_mock.fixsession import LOGON_TIMEOUT, FixConnection, FixSession
from exchange_mock.fixstore import FixStateStore
from exchange_mock.logfmt import log_event

logger = logging.getLogger(__name__)

DEFAULT_COMP_ID = "EXCHANGE"
LOGOUT_WAIT = 2.0  # seconds a stop waits for the peers' Logout answers
ACCEPT_POLL = 0.2


class FixAcceptor:
    """Binds at construction (raises OSError if the address is taken); serves
    after :meth:`start`; :meth:`stop` from another thread."""

    def __init__(
        self,
        address: tuple[str, int],
        exchange: Exchange,
        faults: Faults | None = None,
        *,
        comp_id: str = DEFAULT_COMP_ID,
        username: str | None = None,
        password: str | None = None,
        logon_timeout: float = LOGON_TIMEOUT,
    ) -> None:
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=64)
        self._listener.settimeout(ACCEPT_POLL)
        self.exchange = exchange
        self.faults = faults or Faults()
        self.store = FixStateStore(exchange.store)
        self.app = FixApplication(exchange)
        self.comp_id = comp_id
        self.logon_timeout = logon_timeout
        self._username = username
        self._password = password
        # Set by stop(): ends the accept loop and the pumps, cuts injected delays.
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._sessions: dict[str, FixSession] = {}
        self._connections: set[FixConnection] = set()
        self._counters: Counter[str] = Counter()
        self._thread = threading.Thread(
            target=self._accept_loop, name="fix-accept", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = LOGOUT_WAIT) -> None:
        """No new connections; a Logout to every logged-on peer; after their
        answers (or ``timeout``) every connection is closed and its threads
        joined."""
        self.halt.set()
        if self._thread.is_alive():
            self._thread.join()
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.logout("exchange stopping")
        deadline = time.monotonic() + timeout
        for connection in connections:
            connection.closed.wait(max(0.0, deadline - time.monotonic()))
            connection.kill("exchange stopped")
        for connection in connections:
            connection.thread.join(timeout=5)
        log_event(logger, "fix_stopped", connections=len(connections))

    def session(self, session_id: str) -> FixSession:
        """The session of ``session_id``, loaded from (or created in) the store."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                state = self.store.load_or_create(session_id)
                session = FixSession(session_id, state, self)
                self._sessions[session_id] = session
            return session

    def credentials_ok(self, username: str | None, password: str | None) -> bool:
        """Username(553)/Password(554) against the configured ones (each checked
        only when configured), in constant time."""
        return _matches(self._username, username) and _matches(self._password, password)

    def forget(self, connection: FixConnection) -> None:
        with self._lock:
            self._connections.discard(connection)

    def count(self, event: str) -> None:
        with self._lock:
            self._counters[event] += 1

    def stats(self) -> dict[str, Any]:
        """Counters of session events and the sessions logged on now."""
        with self._lock:
            sessions = list(self._sessions.values())
            counters = dict(self._counters)
        return {
            "events": counters,
            "sessions_logged_on": sum(1 for s in sessions if s.connection is not None),
        }

    def _accept_loop(self) -> None:
        log_event(logger, "fix_listening", address="{}:{}".format(*self.address))
        while not self.halt.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.halt.is_set():
                    return
                logger.exception("FIX accept failed")
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = FixConnection(self, sock, f"{peer[0]}:{peer[1]}")
            with self._lock:
                if self.halt.is_set():
                    sock.close()
                    return
                self._connections.add(connection)
            self.count("connections")
            connection.start()


def _matches(expected: str | None, sent: str | None) -> bool:
    if expected is None:
        return True
    return sent is not None and hmac.compare_digest(sent.encode(), expected.encode())
