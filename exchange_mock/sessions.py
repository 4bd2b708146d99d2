"""Epoch fencing of sessions (like a venue allowing one logon per session).

A session is a FIX SenderCompID (the broker has one per Kafka topic,
``BROKER-<n>``). Its Logon carries the leader's epoch in RawData(96); every
order and cancel of that connection is then made under its :class:`Fence`
(session and epoch). The exchange keeps, per session, the highest epoch it has
seen (persisted). Contract of :meth:`EpochRegistry.admit`:

- epoch lower than the highest: :class:`StaleEpoch`, and the caller must do
  NOTHING for the request (the engine admits under the same lock as the action,
  so a stale request can never act after a newer epoch has been admitted);
- equal: admitted;
- higher: recorded as the new highest (an implicit logon), then admitted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from exchange_mock.store import OrderStore

MAX_EPOCH = 2**63 - 1  # a ZooKeeper zxid, and SQLite's INTEGER, fit


class StaleEpoch(Exception):
    """The epoch is lower than the highest the session has seen (FIX: Logout
    ``stale epoch``)."""

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
