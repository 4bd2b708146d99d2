"""How the leader asks librdkafka for messages (the Kafka client is faked: what is
checked is the calls made to it)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from executor import consumer as consumer_module
from executor.consumer import TopicConsumer


@dataclass
class FakeMessage:
    offset_: int

    def error(self):
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self.offset_


class FakeKafkaConsumer:
    """consume(n, timeout) as librdkafka has it: it returns early only once it
    has n messages, otherwise it waits the whole timeout."""

    def __init__(self, config: dict) -> None:
        self.fetched: list[FakeMessage] = []
        self.calls: list[tuple[int, float]] = []
        # Watermarks: the broker's, and the last one a fetch response carried
        # (None: nothing fetched yet, librdkafka answers OFFSET_INVALID).
        self.broker_high = 0
        self.cached_high: int | None = None
        self.watermark_queries: list[bool] = []  # cached? per call

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append((num_messages, timeout))
        taken, self.fetched = self.fetched[:num_messages], self.fetched[num_messages:]
        return taken

    def get_watermark_offsets(self, partition, timeout=None, cached=False):
        self.watermark_queries.append(cached)
        if cached:
            return -1001, -1001 if self.cached_high is None else self.cached_high
        return 0, self.broker_high


@pytest.fixture
def topic_consumer(monkeypatch) -> TopicConsumer:
    monkeypatch.setattr(consumer_module, "Consumer", FakeKafkaConsumer)
    return TopicConsumer(bootstrap_servers="unused:9092", topic="trades.0", epoch=1)


def test_a_batch_never_waits_for_more_than_its_first_message(topic_consumer):
    kafka = topic_consumer._consumer
    kafka.fetched = [FakeMessage(0)]

    messages = topic_consumer.poll(0.2, max_messages=16)

    assert [m.offset() for m in messages] == [0]
    # Only the first message may be waited for; the rest is taken as it is.
    assert all(n == 1 or timeout == 0 for n, timeout in kafka.calls)


def test_a_batch_takes_what_is_already_fetched_up_to_its_size(topic_consumer):
    kafka = topic_consumer._consumer
    kafka.fetched = [FakeMessage(offset) for offset in range(20)]

    messages = topic_consumer.poll(0.2, max_messages=16)

    assert [m.offset() for m in messages] == list(range(16))
    assert all(n == 1 or timeout == 0 for n, timeout in kafka.calls)


def test_an_idle_topic_waits_the_timeout_once(topic_consumer):
    kafka = topic_consumer._consumer

    assert topic_consumer.poll(0.2, max_messages=16) == []
    assert kafka.calls == [(1, 0.2)]


def test_lag_is_read_from_the_fetch_responses_while_messages_arrive(topic_consumer):
    """Asking the broker waits behind the fetch long-poll on the same connection
    and held the leader thread for up to fetch.wait.max.ms in a backlog."""
    kafka = topic_consumer._consumer
    kafka.fetched = [FakeMessage(offset) for offset in range(10)]
    kafka.cached_high = kafka.broker_high = 40
    topic_consumer.poll(0.2, max_messages=4)

    assert topic_consumer.observe_lag() == 36
    assert kafka.watermark_queries == [True]


def test_lag_asks_the_broker_when_nothing_was_fetched_for_the_partition(
    topic_consumer,
):
    kafka = topic_consumer._consumer
    kafka.fetched = [FakeMessage(0)]
    kafka.broker_high = 5
    topic_consumer.poll(0.2)

    assert topic_consumer.observe_lag() == 4
    assert kafka.watermark_queries == [True, False]


def test_an_idle_consumer_asks_the_broker_so_a_stuck_fetcher_shows(
    topic_consumer, monkeypatch
):
    kafka = topic_consumer._consumer
    kafka.fetched = [FakeMessage(0)]
    topic_consumer.poll(0.2)
    # The fetcher stopped: its cache says nothing is waiting, the broker has 9.
    kafka.cached_high, kafka.broker_high = 1, 10
    later = consumer_module.time.monotonic() + consumer_module.CACHED_LAG_SECONDS + 1
    monkeypatch.setattr(consumer_module.time, "monotonic", lambda: later)

    lag = topic_consumer.observe_lag()

    assert lag == 9
    assert kafka.watermark_queries == [False]
    assert topic_consumer.stalled(0.5, lag)
