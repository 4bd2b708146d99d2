"""One candidate per topic: join the topic's kazoo Election, and while elected run
the leader body. Leaving the body releases the election node; the candidate then
rejoins (unless the process is stopping)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kazoo.client import KazooClient
from kazoo.exceptions import CancelledError, KazooException

logger = logging.getLogger(__name__)

# leader body: (topic, epoch) -> returns when leadership should end
LeaderBody = Callable[[str, int], None]


class TopicCandidate(threading.Thread):
    def __init__(
        self,
        *,
        zk: KazooClient,
        election_path: str,
        topic: str,
        identifier: str,
        lead: LeaderBody,
        stopping: threading.Event,
    ) -> None:
        super().__init__(name=f"candidate-{topic}", daemon=True)
        self._zk = zk
        self._path = election_path
        self._topic = topic
        self._identifier = identifier
        self._lead = lead
        self._stopping = stopping
        self._election = None

    def cancel(self) -> None:
        """Stop waiting for leadership (a no-op for a running leader body, which
        watches the stop flag itself)."""
        election = self._election
        if election is not None:
            election.cancel()

    def run(self) -> None:
        while not self._stopping.is_set():
            election = self._zk.Election(self._path, self._identifier)
            self._election = election
            try:
                election.run(self._lead_with_epoch, election)
            except CancelledError:
                return
            except KazooException as exc:
                logger.warning("election error topic=%s error=%r", self._topic, exc)
            except Exception:
                logger.exception("leader body crashed topic=%s", self._topic)
            self._stopping.wait(0.5)

    def _lead_with_epoch(self, election) -> None:
        lock = election.lock
        stat = self._zk.exists(f"{lock.path}/{lock.node}")
        if stat is None:  # session lost between winning and here
            return
        # czxid: the zxid that created our node. Successive leaders are the
        # lowest-sequence nodes in turn, so each one's czxid is higher than
        # its predecessor's: an epoch that only grows.
        self._lead(self._topic, stat.czxid)
