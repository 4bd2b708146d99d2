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

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        self.calls.append((num_messages, timeout))
        taken, self.fetched = self.fetched[:num_messages], self.fetched[num_messages:]
        return taken


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
