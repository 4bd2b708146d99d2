"""Sessions and epoch fencing (like a venue allowing one logon per session).

A session id is an opaque string (the broker uses its Kafka topic name). Each
fenced request carries ``X-Session`` and ``X-Epoch``; the exchange keeps, per
session, the highest epoch it has seen (persisted). Contract of
:meth:`EpochRegistry.admit`:

- epoch lower than the highest: :class:`StaleEpoch`, and the caller must do
  NOTHING for the request (the engine admits under the same lock as the action,
  so a stale request can never act after a newer epoch has been admitted);
- equal: admitted;
- higher: recorded as the new highest (an implicit logon), then admitted.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from exchange_mock.store import OrderStore

SESSION_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
EPOCH_RE = re.compile(r"[0-9]{1,19}")
MAX_EPOCH = 2**63 - 1  # a ZooKeeper zxid, and SQLite's INTEGER, fit
SESSION_HEADER = "X-Session"
EPOCH_HEADER = "X-Epoch"


class InvalidSession(ValueError):
    """A session id or epoch is malformed (HTTP 400 ``invalid_session``)."""


class StaleEpoch(Exception):
    """The epoch is lower than the highest the session has seen (HTTP 409)."""

    def __init__(self, session_id: str, epoch: int, current: int) -> None:
        super().__init__(f"session {session_id}: epoch {epoch} < {current}")
        self.session_id = session_id
        self.epoch = epoch
        self.current = current


@dataclass(frozen=True)
class Fence:
    """The session and epoch a request claims."""

    session_id: str
    epoch: int


def parse_session_id(raw: object) -> str:
    if not isinstance(raw, str) or not SESSION_ID_RE.fullmatch(raw):
        raise InvalidSession(
            "a session id is 1 to 128 characters from A-Z a-z 0-9 . _ : -"
        )
    return raw


def parse_epoch(raw: object) -> int:
    """A non-negative integer: a JSON integer or a string of digits."""
    if isinstance(raw, str) and EPOCH_RE.fullmatch(raw):
        raw = int(raw)
    # bool is an int subclass: true is not an epoch.
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= MAX_EPOCH:
        return raw
    raise InvalidSession(f"an epoch is an integer from 0 to {MAX_EPOCH}")


def parse_fence(session: str | None, epoch: str | None) -> Fence | None:
    """The fence from the two headers; None when neither is sent (unfenced).
    One without the other is malformed."""
    if session is None and epoch is None:
        return None
    if session is None or epoch is None:
        raise InvalidSession(
            f"send both {SESSION_HEADER} and {EPOCH_HEADER}, or neither"
        )
    return Fence(parse_session_id(session.strip()), parse_epoch(epoch.strip()))


class EpochRegistry:
    """The highest epoch of every session, persisted in the store. Thread-safe."""

    def __init__(self, store: OrderStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def current(self, session_id: str) -> int | None:
        """The highest epoch seen, or None for a session never seen."""
        return self._store.get_epoch(session_id)

    def admit(self, fence: Fence) -> int:
        """Admit ``fence`` or raise :class:`StaleEpoch`; returns the (possibly
        new) highest epoch. See the module docstring."""
        with self._lock:
            current = self._store.get_epoch(fence.session_id)
            if current is not None and fence.epoch < current:
                raise StaleEpoch(fence.session_id, fence.epoch, current)
            if current is None or fence.epoch > current:
                self._store.set_epoch(fence.session_id, fence.epoch)
            return fence.epoch
