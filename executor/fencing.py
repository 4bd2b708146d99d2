"""A leader's fence: every database write of a leader runs in ``fence.transaction()``,
which first re-reads the topic's stored epoch and refuses if it is not this
leader's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import transaction

from broker.errors import Fenced
from broker.services.leadership import fence_check


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
