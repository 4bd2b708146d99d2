"""One candidate per topic: while the executor is under its leadership share, join
the topic's kazoo Election and, once elected, run the leader body. Leaving the body
releases the election node; the candidate then competes again when it may."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaException
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, NoNodeError

logger = logging.getLogger(__name__)

# leader body: (topic, epoch, election node path) -> returns when leadership ends
LeaderBody = Callable[[str, int, str], None]


class TopicCandidate(threading.Thread):
    def __init__(
        self,
        *,
        zk: KazooClient,
        election_path: str,
        topic: str,
        identifier: str,
        lead: LeaderBody,
        may_compete: Callable[[], bool],
        stopping: threading.Event,
    ) -> None:
        super().__init__(name=f"candidate-{topic}", daemon=True)
        self._zk = zk
        self.election_path = election_path
        self.topic = topic
        self._identifier = identifier
        self._lead = lead
        self._may_compete = may_compete
        self._stopping = stopping
        self._election = None
        self._in_body = threading.Event()

    @property
    def waiting(self) -> bool:
        """Queued in the election but not leading."""
        return self._election is not None and not self._in_body.is_set()

    def withdraw(self) -> None:
        """Stop waiting for leadership (no effect on a running leader body, which
        watches its own conditions)."""
        election = self._election
        if election is not None and not self._in_body.is_set():
            election.cancel()

    def run(self) -> None:
        self._remove_own_nodes()
        while not self._stopping.is_set():
            if not self._may_compete():
                self._stopping.wait(0.2)
                continue
            election = self._zk.Election(self.election_path, self._identifier)
            self._election = election
            try:
                election.run(self._lead_with_epoch, election)  # returns if canceled
            except KazooException as exc:
                logger.warning("election error topic=%s error=%r", self.topic, exc)
            except KafkaException as exc:
                # An outage, not a bug: release and compete again once it is back.
                logger.warning(
                    "kafka unavailable, leadership released topic=%s error=%s",
                    self.topic,
                    exc,
                )
            except Exception:
                logger.exception("leader body crashed topic=%s", self.topic)
            finally:
                self._election = None
            self._remove_own_nodes()
            # Give a queued successor the chance to take what we just released.
            self._stopping.wait(0.5)

    def _remove_own_nodes(self) -> None:
        """Between two elections this candidate owns no node. kazoo deletes a lock
        node on release or cancel only on a best-effort basis: one left behind
        while ZooKeeper was unreachable lives on with our session, heads the
        queue and would stall the topic's election until this process exits.
        Retried until ZooKeeper answers (or the executor stops)."""
        while not self._stopping.is_set():
            try:
                session = self._zk.client_id
                for child in self._zk.get_children(self.election_path):
                    path = f"{self.election_path}/{child}"
                    stat = self._zk.exists(path)
                    if session and stat and stat.ephemeralOwner == session[0]:
                        with contextlib.suppress(NoNodeError):
                            self._zk.delete(path)
                        logger.warning(
                            "removed a stale election node topic=%s node=%s",
                            self.topic,
                            child,
                        )
                return
            except NoNodeError:
                return  # the election path itself is gone: nothing of ours left
            except KazooException as exc:
                logger.debug("election cleanup deferred topic=%s: %r", self.topic, exc)
                self._stopping.wait(0.5)

    def sweep_stale(self) -> None:
        """While queued: delete election nodes of our session that the current
        election did not create (kazoo names a lock's nodes with a prefix of its
        own). One left by an earlier round whose release or create crossed a
        ZooKeeper outage can head the queue with nobody waiting on it: seen in the
        ZooKeeper-restart chaos scenario, the topic then had no leader until this
        process exited. Calls ZooKeeper: not for a listener."""
        election = self._election
        if election is None or self._in_body.is_set():
            return
        session = self._zk.client_id
        if not session:
            return
        for child in self._zk.get_children(self.election_path):
            if child.startswith(election.lock.prefix):
                continue
            path = f"{self.election_path}/{child}"
            stat = self._zk.exists(path)
            if stat and stat.ephemeralOwner == session[0]:
                with contextlib.suppress(NoNodeError):
                    self._zk.delete(path)
                logger.warning(
                    "removed a stale election node topic=%s node=%s", self.topic, child
                )

    def _lead_with_epoch(self, election) -> None:
        lock = election.lock
        node_path = f"{lock.path}/{lock.node}"
        stat = self._zk.exists(node_path)
        if stat is None:  # session lost between winning and here
            return
        self._in_body.set()
        try:
            # czxid: the zxid that created our node. Successive leaders are the
            # lowest-sequence nodes in turn, so each one's czxid is higher than
            # its predecessor's: an epoch that only grows.
            self._lead(self.topic, stat.czxid, node_path)
        finally:
            self._in_body.clear()

    def contenders(self) -> int:
        election = self._zk.Election(self.election_path)
        return len(election.contenders())
