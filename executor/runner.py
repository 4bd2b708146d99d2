"""The executor process: one ZooKeeper session, one candidate thread per topic, and
for each topic it leads a loop of consume → send → settle."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from django.db import close_old_connections
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException

from broker.kafka_admin import ensure_topics
from broker.observability.metrics import EPOCH, LEADER, MESSAGES
from broker.observability.server import serve_worker_endpoints
from executor.balance import LeadershipBalance
from executor.consumer import TopicConsumer
from executor.db_session import ConnectionRefresher
from executor.dead_letters import KafkaDeadLetterSink
from executor.election import TopicCandidate
from executor.fencing import Fence, Fenced, topic_leader_claim
from executor.fix.session import FixSession, SessionConfig
from executor.orderflow import MessagePosition, Window, handle_messages
from executor.reports import ReportBooking

logger = logging.getLogger(__name__)

# After SIGTERM a leader finishes its current message; one stuck retrying an
# unreachable exchange gives up after this long and leaves it to its successor.
STOP_GRACE_SECONDS = 5.0
# How often a leader checks whether it holds more than its share of topics.
BALANCE_CHECK_SECONDS = 1.0
# How often queued candidates look for stale election nodes of their session.
SWEEP_SECONDS = 2.0
# How often the consumer-lag gauge is refreshed (a broker round trip).
LAG_CHECK_SECONDS = 5.0
# No message for this long while the topic has unread ones: the consumer is
# replaced (see TopicConsumer.stalled).
CONSUMER_STALL_SECONDS = 10.0
# Messages taken per poll: they share one transaction (executor/orderflow.py).
BATCH_MESSAGES = 64


def default_identity() -> str:
    return os.environ.get("EXECUTOR_NAME") or f"{socket.gethostname()}:{os.getpid()}"


class Executor:
    def __init__(
        self,
        *,
        identity: str,
        topics: list[str],
        partitions: int,
        zookeeper_hosts: str,
        zookeeper_root: str,
        session_timeout: float,
        bootstrap_servers: str,
        fix_config: Callable[[str], SessionConfig],
        fix_window: int,
        dead_letter_topic: str,
    ) -> None:
        self.identity = identity
        self._dead_letter_topic = dead_letter_topic
        self._topics = topics
        self._partitions = partitions
        self._zookeeper_root = zookeeper_root.rstrip("/")
        self._bootstrap_servers = bootstrap_servers
        # topic → the settings of its FIX session (docs/FIX.md).
        self._fix_config = fix_config
        self._fix_window = fix_window
        self._stop = threading.Event()
        self._stop_requested_at: float | None = None
        self._connected = threading.Event()
        self._sessions_lost = 0
        self._reconnects = 0
        self._zk = KazooClient(
            hosts=zookeeper_hosts,
            timeout=session_timeout,
            connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
            command_retry={"max_tries": 3, "delay": 0.1, "max_delay": 1.0},
        )
        self._balance = LeadershipBalance(
            zk=self._zk,
            members_path=f"{self._zookeeper_root}/members",
            topics=topics,
        )

    # -- lifecycle ------------------------------------------------------------

    def stop(self) -> None:
        """Signal handler: only sets the flag."""
        if self._stop_requested_at is None:
            self._stop_requested_at = time.monotonic()
        self._stop.set()

    def run(self) -> None:
        ensure_topics(
            self._bootstrap_servers,
            [*self._topics, self._dead_letter_topic],
            partitions=self._partitions,
        )
        self._dead_letters = KafkaDeadLetterSink(
            bootstrap_servers=self._bootstrap_servers, topic=self._dead_letter_topic
        )
        self._kafka_admin = AdminClient({"bootstrap.servers": self._bootstrap_servers})
        # Every executor reports every topic, led or not, so a topic nobody leads
        # sums to 0 (an alert) instead of having no series at all.
        for topic in self._topics:
            LEADER.labels(topic).set(0)
        serve_worker_endpoints(self._ready)
        self._zk.add_listener(self._on_zk_state)
        self._zk.start(timeout=30)
        self._connected.set()
        self._balance.join(self.identity)
        registered_in_session = self._sessions_lost
        candidates = [
            TopicCandidate(
                zk=self._zk,
                election_path=f"{self._zookeeper_root}/elections/{topic}",
                topic=topic,
                identifier=self.identity,
                lead=self._lead,
                may_compete=self._balance.may_compete,
                stopping=self._stop,
            )
            for topic in self._topics
        ]
        for candidate in candidates:
            candidate.start()
        logger.info(
            "executor started identity=%s topics=%s", self.identity, self._topics
        )
        reconnects_seen = self._reconnects
        next_sweep = 0.0
        try:
            while not self._stop.wait(0.2):
                if registered_in_session != self._sessions_lost and (
                    self._connected.is_set()
                ):
                    # A new ZooKeeper session: our membership node died with the
                    # old one.
                    self._balance.join(self.identity)
                    registered_in_session = self._sessions_lost
                if reconnects_seen != self._reconnects and self._connected.is_set():
                    # kazoo's Lock can wait for ever after a reconnect (kazoo
                    # #282): seen in the ZooKeeper-restart chaos scenario, a
                    # candidate heading two topics' queues that never led them.
                    # Queue again with a fresh election node instead.
                    reconnects_seen = self._reconnects
                    _withdraw_waiting(candidates, "zookeeper reconnected")
                if not self._balance.may_compete():
                    _withdraw_waiting(candidates)
                if self._connected.is_set() and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    _sweep_stale_nodes(candidates)
        finally:
            for candidate in candidates:
                candidate.withdraw()
            for candidate in candidates:
                candidate.join(timeout=STOP_GRACE_SECONDS + 10)
            self._zk.stop()
            self._zk.close()
            logger.info("executor stopped identity=%s", self.identity)

    def _ready(self) -> bool:
        """Readiness: connected to ZooKeeper and Kafka answers."""
        if not self._connected.is_set():
            return False
        self._kafka_admin.list_topics(timeout=2)
        return True

    def _on_zk_state(self, state: KazooState) -> None:
        """kazoo listener: never blocks, never calls ZooKeeper; only sets flags."""
        if state == KazooState.CONNECTED:
            if not self._connected.is_set():
                self._reconnects += 1
            self._connected.set()
        else:
            self._connected.clear()
            if state == KazooState.LOST:
                self._sessions_lost += 1

    # -- leadership -----------------------------------------------------------

    def _lead(self, topic: str, epoch: int, node_path: str) -> None:
        """The leader body of one topic: fence, log on, consume → send → settle,
        and serve the topic's FIX session, until a reason to step down."""
        if not self._balance.try_take(topic):
            return  # at our share already: release at once, before any write
        try:
            self._lead_taken(topic, epoch, node_path)
        finally:
            self._balance.release(topic)

    def _lead_taken(self, topic: str, epoch: int, node_path: str) -> None:
        sessions_lost_at_start = self._sessions_lost

        def still_leader() -> bool:
            if self._sessions_lost != sessions_lost_at_start:
                return False
            if not self._connected.is_set():
                return False
            stopping_since = self._stop_requested_at
            return (
                stopping_since is None
                or time.monotonic() - stopping_since < STOP_GRACE_SECONDS
            )

        close_old_connections()
        if not topic_leader_claim(topic=topic, epoch=epoch, holder=self.identity):
            logger.warning("stale epoch, not leading topic=%s epoch=%s", topic, epoch)
            return
        logger.info(
            "leading topic=%s epoch=%s identity=%s", topic, epoch, self.identity
        )
        fence = Fence(
            topic=topic, epoch=epoch, still_leader=still_leader, holder=self.identity
        )
        lost = threading.Event()

        def new_consumer() -> TopicConsumer:
            fresh = TopicConsumer(
                bootstrap_servers=self._bootstrap_servers, topic=topic, epoch=epoch
            )
            try:
                fresh.assign_from_stored_offsets()
            except Exception:
                fresh.close()
                raise
            return fresh

        consumer: TopicConsumer | None = None
        connections = ConnectionRefresher()
        window = Window(topic=topic, limit=self._fix_window)
        config = self._fix_config(topic)
        booking = ReportBooking(
            topic=topic,
            session=config.sender_comp_id,
            epoch=epoch,
            on_ack=window.ack,
        )
        session = FixSession(
            config=config,
            topic=topic,
            fence=fence,
            on_app=booking,
            on_poison=booking.poisoned,
            stop=self._stop,
            lost=lost,
        )
        session_thread = threading.Thread(
            target=session.run, name=f"fix-{topic}", daemon=True
        )
        reconnects_seen = self._reconnects
        next_balance_check = time.monotonic() + BALANCE_CHECK_SECONDS
        next_lag_check = 0.0
        try:
            session.prepare()
            session_thread.start()
            consumer = new_consumer()
            LEADER.labels(topic).set(1)
            EPOCH.labels(topic).set(epoch)
            while not self._stop.is_set() and not lost.is_set():
                if self._sessions_lost != sessions_lost_at_start:
                    logger.warning("zookeeper session lost topic=%s", topic)
                    return
                if not self._connected.is_set():
                    # Suspended: send nothing, write nothing until we know.
                    self._connected.wait(0.2)
                    continue
                if self._reconnects != reconnects_seen:
                    reconnects_seen = self._reconnects
                    if not self._still_own(node_path):
                        logger.warning(
                            "election node gone after reconnect topic=%s", topic
                        )
                        return
                if time.monotonic() >= next_balance_check:
                    next_balance_check = time.monotonic() + BALANCE_CHECK_SECONDS
                    if time.monotonic() >= next_lag_check:
                        next_lag_check = time.monotonic() + LAG_CHECK_SECONDS
                        # Measured every check, so the metric follows a backlog.
                        lag = consumer.observe_lag()
                        if consumer.stalled(CONSUMER_STALL_SECONDS, lag):
                            consumer = self._replace_consumer(consumer, new_consumer)
                    if self._should_resign(topic, node_path):
                        logger.info(
                            "resigning topic=%s to balance leadership (share %s)",
                            topic,
                            self._balance.share(),
                        )
                        return
                if not window.wait_for_room(0.2):
                    continue  # the venue has not acknowledged enough yet
                messages = consumer.poll(0.2, max_messages=BATCH_MESSAGES)
                if not messages:
                    continue
                connections.maybe()
                outcomes = handle_messages(
                    [
                        (
                            m.value(),
                            MessagePosition(m.topic(), m.partition(), m.offset()),
                        )
                        for m in messages
                    ],
                    fence=fence,
                    session=session,
                    dead_letters=self._dead_letters,
                    window=window,
                )
                for outcome in outcomes:
                    MESSAGES.labels(topic, outcome).inc()
                consumer.commit_hint()
        except Fenced as exc:
            logger.warning("fenced, stepping down topic=%s reason=%s", topic, exc)
        finally:
            LEADER.labels(topic).set(0)
            lost.set()
            if session_thread.is_alive():
                session_thread.join(timeout=10)
            if consumer is not None:
                consumer.close()
            close_old_connections()
            logger.info("stopped leading topic=%s epoch=%s", topic, epoch)

    def _replace_consumer(
        self, stalled: TopicConsumer, new_consumer: Callable[[], TopicConsumer]
    ) -> TopicConsumer:
        """A fresh consumer at the stored offsets, or the old one while Kafka does
        not answer (tried again at the next check)."""
        try:
            fresh = new_consumer()
        except (KafkaException, RuntimeError) as exc:
            logger.warning(
                "consumer stalled, Kafka unavailable topic=%s error=%s",
                stalled.topic,
                exc,
            )
            return stalled
        logger.warning("consumer stalled, replaced topic=%s", stalled.topic)
        stalled.close()
        return fresh

    def _still_own(self, node_path: str) -> bool:
        """After a reconnect: is our election node still there, and ours?"""
        try:
            stat = self._zk.exists(node_path)
        except KazooException:
            return False
        return stat is not None and stat.ephemeralOwner == self._zk.client_id[0]

    def _should_resign(self, topic: str, node_path: str) -> bool:
        """Over our share and someone else is queued to take this topic over."""
        if not self._balance.should_resign(topic):
            return False
        try:
            queued = self._zk.Election(node_path.rsplit("/", 1)[0]).contenders()
        except KazooException:
            return False
        return len(queued) > 1


def _withdraw_waiting(candidates: list[TopicCandidate], why: str = "") -> None:
    """Take the candidates that are queued, not leading, out of their elections
    (they compete again when they may)."""
    for candidate in candidates:
        if candidate.waiting:
            if why:
                logger.info("candidate requeued topic=%s: %s", candidate.topic, why)
            candidate.withdraw()


def _sweep_stale_nodes(candidates: list[TopicCandidate]) -> None:
    for candidate in candidates:
        try:
            candidate.sweep_stale()
        except KazooException as exc:
            logger.debug("election sweep deferred topic=%s: %r", candidate.topic, exc)
