"""Kafka transport of one led topic: the leader assign()s the topic's partitions
itself (no consumer-group rebalance decides ownership) at the offsets stored in
PostgreSQL, which move only in the same transaction as the work."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from broker.observability.metrics import CONSUMER_LAG
from executor.offsets import consumer_offsets

logger = logging.getLogger(__name__)

HINT_SECONDS = 1.0
# A message this recent means the fetcher is alive and its cached high
# watermark current (see TopicConsumer.observe_lag).
CACHED_LAG_SECONDS = 2.0


class TopicConsumer:
    def __init__(self, *, bootstrap_servers: str, topic: str, epoch: int) -> None:
        self.topic = topic
        # Next offset this leader expects per partition, and when a message last
        # arrived: together they tell a stalled fetcher from an idle topic.
        self._next: dict[int, int] = {}
        self._last_message_at = time.monotonic()
        self._hint_at = 0.0
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                # Only for the monitoring hint commits; membership is never used.
                "group.id": f"executor.{topic}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # The broker answers a fetch as soon as one message is there
                # (fetch.min.bytes=1): a long wait costs no latency, only spares
                # the broker and this process an idle fetch every few ms.
                "fetch.wait.max.ms": 500,
                "client.id": f"executor-{topic}-{epoch}",
            }
        )

    def assign_from_stored_offsets(self, timeout: float = 10.0) -> list[int]:
        metadata = self._consumer.list_topics(self.topic, timeout=timeout)
        topic_metadata = metadata.topics.get(self.topic)
        if topic_metadata is None or topic_metadata.error is not None:
            raise RuntimeError(f"topic {self.topic} is not available")
        partitions = sorted(topic_metadata.partitions)
        stored = consumer_offsets(topic=self.topic)
        self._next = {p: stored.get(p, 0) for p in partitions}
        self._last_message_at = time.monotonic()
        self._consumer.assign(
            [
                TopicPartition(self.topic, p, stored.get(p, OFFSET_BEGINNING))
                for p in partitions
            ]
        )
        logger.info(
            "assigned topic=%s partitions=%s offsets=%s", self.topic, partitions, stored
        )
        return partitions

    def poll(self, timeout: float, max_messages: int = 1) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` for the
        first; whatever else is already fetched comes with it.

        librdkafka's consume(n, timeout) waits for n messages or the whole
        timeout, so at low load a batch of 16 held every trade for up to 200 ms:
        wait for one, then take only what is already here (timeout 0)."""
        raw = self._consumer.consume(1, timeout)
        if raw and max_messages > 1:
            raw += self._consumer.consume(max_messages - 1, 0)
        messages = []
        for message in raw:
            if message.error() is not None:
                logger.warning(
                    "consume error topic=%s error=%s", self.topic, message.error()
                )
                continue
            self._next[message.partition()] = message.offset() + 1
            self._last_message_at = time.monotonic()
            messages.append(message)
        return messages

    def observe_lag(self) -> int | None:
        """Consumer lag per partition (high watermark - next offset to handle) for
        the metric; returns the total, None when the broker did not answer.

        While messages arrive, the high watermark that every fetch response
        carries (librdkafka keeps the last one) is fresh, and no request is
        sent. Only a consumer that received nothing lately asks the broker, so a
        stuck fetcher (which updates nothing) is told from an empty topic. The
        question waits behind the fetch long-poll on the same connection (up to
        ``fetch.wait.max.ms``): asked every few seconds in a backlog, it held
        the leader thread for up to half a second each time while hundreds of
        messages sat in the local queue."""
        cached = time.monotonic() - self._last_message_at < CACHED_LAG_SECONDS
        total = 0
        for partition, expected in self._next.items():
            tp = TopicPartition(self.topic, partition)
            try:
                low, high = self._consumer.get_watermark_offsets(
                    tp, timeout=1, cached=cached
                )
                if cached and high < 0:  # nothing fetched for it yet
                    low, high = self._consumer.get_watermark_offsets(tp, timeout=1)
            except Exception:
                return None
            if high < 0:
                return None
            # The cached low watermark is only kept with statistics enabled
            # (OFFSET_INVALID otherwise): the next offset stands in for it.
            lag = max(0, high - max(expected, low))
            CONSUMER_LAG.labels(self.topic, str(partition)).set(lag)
            total += lag
        return total

    def stalled(self, after_seconds: float, lag: int | None) -> bool:
        """No message for ``after_seconds`` while messages wait on the broker
        (``lag``, from ``observe_lag``), or while this consumer cannot even get the
        watermarks (``lag`` None). librdkafka's fetcher for an assign()ed partition
        can stay stuck after a broker restart (confluentinc/librdkafka#5153,
        #4492); the leader then replaces this consumer (offsets are in
        PostgreSQL, nothing is lost)."""
        if time.monotonic() - self._last_message_at < after_seconds:
            return False
        return lag is None or lag > 0

    def commit_hint(self) -> None:
        """Mirror progress into Kafka's group offsets so standard lag tooling sees
        it, at most once per ``HINT_SECONDS`` (a commit per message would cost the
        broker and this process a request each). PostgreSQL stays the truth; a
        lost or late hint is harmless."""
        now = time.monotonic()
        if now - self._hint_at < HINT_SECONDS:
            return
        self._hint_at = now
        try:
            self._consumer.commit(
                offsets=[
                    TopicPartition(self.topic, partition, offset)
                    for partition, offset in self._next.items()
                ],
                asynchronous=True,
            )
        except Exception:
            logger.debug("offset hint commit failed", exc_info=True)

    def close(self, timeout: float = 5.0) -> None:
        """Close within ``timeout``: librdkafka's close can wait on an unreachable
        broker, and a leader stepping down must not hang on it (its successor
        does not need anything from this consumer: offsets are in PostgreSQL)."""
        # No longer ours: a stale lag would be summed with the new leader's.
        for partition in self._next:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.topic, str(partition))
        closer = threading.Thread(
            target=self._consumer.close, name=f"close-{self.topic}", daemon=True
        )
        closer.start()
        closer.join(timeout)
        if closer.is_alive():
            logger.warning(
                "consumer close abandoned after %ss topic=%s", timeout, self.topic
            )
