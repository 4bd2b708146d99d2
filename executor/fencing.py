"""Fencing of topic leaders in PostgreSQL. ZooKeeper elects; the ``broker_topicleader``
table decides whose writes count. An epoch only grows (the czxid of the leader's
election node), so a paused or partitioned old leader that wakes up finds a higher
epoch and is refused. Every database write of a leader runs in
``fence.transaction()``, which first re-reads the topic's stored epoch."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction
from django.utils import timezone


class Fenced(Exception):
    """This executor is no longer the leader of its topic: roll back and step down."""


def topic_leader_claim(*, topic: str, epoch: int, holder: str) -> bool:
    """Record ``holder`` as leader of ``topic`` if ``epoch`` is higher than the
    stored one (conditional upsert). Returns whether the claim won; a lower or equal
    epoch never overwrites."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO broker_topicleader (topic, epoch, holder, elected_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (topic) DO UPDATE
               SET epoch = EXCLUDED.epoch,
                   holder = EXCLUDED.holder,
                   elected_at = EXCLUDED.elected_at
             WHERE broker_topicleader.epoch < EXCLUDED.epoch
            RETURNING epoch
            """,
            [topic, epoch, holder, timezone.now()],
        )
        return cursor.fetchone() is not None


def fence_check(*, topic: str, epoch: int) -> None:
    """Raise Fenced unless ``epoch`` is the stored epoch of ``topic``.

    Must run inside the transaction it protects: the row is read FOR SHARE, so a new
    leader's claim waits until this transaction ends, and a transaction that passed
    the check commits before any successor starts work.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT epoch FROM broker_topicleader WHERE topic = %s FOR SHARE", [topic]
        )
        row = cursor.fetchone()
    if row is None or row[0] != epoch:
        stored = None if row is None else row[0]
        raise Fenced(f"{topic}: epoch {epoch} is not the leader's ({stored})")


@dataclass(frozen=True)
class Fence:
    topic: str
    epoch: int
    # False as soon as ZooKeeper says this process may no longer be leader
    # (connection suspended, session lost): stop writing at once.
    still_leader: Callable[[], bool]
    # Which executor holds it (for the records it leaves, e.g. the timeline).
    holder: str = ""

    def check_alive(self) -> None:
        if not self.still_leader():
            raise Fenced(f"{self.topic}: leadership of epoch {self.epoch} is in doubt")

    def wait_or_raise(self, seconds: float) -> None:
        """Back off, but never past the end of the leadership."""
        time.sleep(seconds)
        self.check_alive()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """An atomic block that commits only if this leader still holds the epoch."""
        self.check_alive()
        with transaction.atomic():
            fence_check(topic=self.topic, epoch=self.epoch)
            yield
