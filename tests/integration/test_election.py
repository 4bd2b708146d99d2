"""The topic election on the real ZooKeeper."""

from __future__ import annotations

import threading
import uuid

from django.conf import settings
from kazoo.client import KazooClient

from devstack.wait import wait_until
from executor.election import TopicCandidate


def test_an_election_node_left_behind_by_our_session_does_not_stall_the_topic():
    """kazoo deletes a lock node on release/cancel only on a best-effort basis: one
    left behind while ZooKeeper was unreachable lives on with the session and
    heads the queue. The candidate removes it instead of waiting behind it."""
    zk = KazooClient(hosts=settings.ZOOKEEPER_HOSTS)
    zk.start(timeout=15)
    path = f"{settings.ZOOKEEPER_ROOT}/test-elections/{uuid.uuid4().hex}"
    stopping = threading.Event()
    led: list[str] = []
    try:
        orphan = zk.create(
            f"{path}/{uuid.uuid4().hex}__lock__",
            b"executor-1",
            ephemeral=True,
            sequence=True,
            makepath=True,
        )
        candidate = TopicCandidate(
            zk=zk,
            election_path=path,
            topic="topic-x",
            identifier="executor-1",
            lead=lambda topic, epoch, node: led.append(node),
            may_compete=lambda: not led,
            stopping=stopping,
        )
        candidate.start()
        wait_until(lambda: led, timeout=15, what="leadership despite the stale node")
        assert zk.exists(orphan) is None
    finally:
        stopping.set()
        zk.delete(path, recursive=True)
        zk.stop()
        zk.close()


def test_a_queued_candidate_sweeps_its_sessions_stale_nodes_and_no_one_elses():
    """A node of our session that the current election did not create (left by an
    earlier round across a ZooKeeper outage) is deleted while we wait; the node
    of the current election and other sessions' nodes are left alone."""
    ours = KazooClient(hosts=settings.ZOOKEEPER_HOSTS)
    theirs = KazooClient(hosts=settings.ZOOKEEPER_HOSTS)
    ours.start(timeout=15)
    theirs.start(timeout=15)
    path = f"{settings.ZOOKEEPER_ROOT}/test-elections/{uuid.uuid4().hex}"
    try:
        candidate = TopicCandidate(
            zk=ours,
            election_path=path,
            topic="topic-y",
            identifier="executor-1",
            lead=lambda topic, epoch, node: None,
            may_compete=lambda: True,
            stopping=threading.Event(),
        )
        election = ours.Election(path, "executor-1")
        candidate._election = election  # queued, as while election.run waits

        def node(client: KazooClient, prefix: str) -> str:
            return client.create(
                f"{path}/{prefix}", ephemeral=True, sequence=True, makepath=True
            )

        stale = node(ours, f"{uuid.uuid4().hex}__lock__")
        current = node(ours, election.lock.prefix)
        other_session = node(theirs, f"{uuid.uuid4().hex}__lock__")

        candidate.sweep_stale()

        assert ours.exists(stale) is None
        assert ours.exists(current) is not None
        assert ours.exists(other_session) is not None
    finally:
        theirs.stop()
        theirs.close()
        ours.delete(path, recursive=True)
        ours.stop()
        ours.close()
