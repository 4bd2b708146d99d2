"""Balanced leadership: with N live executors and T topics no executor leads more
than ceil(T/N) topics once the cluster is stable. An executor under its share
competes for every topic it does not lead (so it is queued to take over at once);
one at its share stops competing; one over its share (executors joined) resigns
its extra topics, one at a time, and only when someone else is queued for them.

Membership is an ephemeral znode per executor; the ChildrenWatch callback only
records the count (kazoo's event thread must not block)."""

from __future__ import annotations

import math
import threading

from kazoo.client import KazooClient
from kazoo.recipe.watchers import ChildrenWatch


class LeadershipBalance:
    def __init__(self, *, zk: KazooClient, members_path: str, topics: list[str]):
        self._zk = zk
        self._members_path = members_path
        self._topics = topics
        self._lock = threading.Lock()
        self._leading: set[str] = set()
        self._members = 1
        self._member_node: str | None = None

    def join(self, identity: str) -> None:
        """Register this executor as a live member and watch the membership."""
        self._member_node = self._zk.create(
            f"{self._members_path}/{identity}-",
            ephemeral=True,
            sequence=True,
            makepath=True,
        )
        ChildrenWatch(self._zk, self._members_path, self._on_members)

    def _on_members(self, children: list[str]) -> None:
        self._members = max(1, len(children))

    @property
    def members(self) -> int:
        return self._members

    def share(self) -> int:
        return math.ceil(len(self._topics) / self._members)

    def leading(self) -> set[str]:
        with self._lock:
            return set(self._leading)

    def may_compete(self) -> bool:
        with self._lock:
            return len(self._leading) < self.share()

    def try_take(self, topic: str) -> bool:
        """Count ``topic`` as led if that keeps this executor within its share."""
        with self._lock:
            if topic in self._leading or len(self._leading) >= self.share():
                return False
            self._leading.add(topic)
            return True

    def release(self, topic: str) -> None:
        with self._lock:
            self._leading.discard(topic)

    def should_resign(self, topic: str) -> bool:
        """Over the share, resign the highest-named led topic first (one decision
        per topic, so two topics are never both resigned for one excess)."""
        with self._lock:
            excess = len(self._leading) - self.share()
            if excess <= 0:
                return False
            return topic in sorted(self._leading)[-excess:]
