"""The relay's in-flight bookkeeping, against a fake producer that answers only
when told to (the boundary to Kafka is faked; the real one is in
tests/integration/test_relay.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.events import Event, encode_envelope
from relay.pipeline import Pipeline


@dataclass
class FakeMessage:
    _value: bytes
    _error: str | None = None

    def value(self) -> bytes:
        return self._value

    def error(self) -> str | None:
        return self._error


@dataclass
class FakeProducer:
    """Holds every produced message until ``answer`` (or flush) delivers it."""

    pending: list[tuple[FakeMessage, object]] = field(default_factory=list)
    refuse: set[int] = field(default_factory=set)  # outbox ids Kafka fails
    hold: set[int] = field(default_factory=set)  # outbox ids never answered

    def produce(self, topic, *, key, value, on_delivery) -> None:
        self.pending.append((FakeMessage(value), on_delivery))

    def poll(self, timeout: float) -> int:
        return 0

    def answer(self, count: int | None = None) -> None:
        """Deliver the oldest ``count`` pending messages (all if None)."""
        count = len(self.pending) if count is None else count
        answered, kept = self.pending[:count], self.pending[count:]
        self.pending = []
        for msg, on_delivery in answered:
            outbox_id = Event.decode(msg.value()).event_id
            if outbox_id in self.hold:
                self.pending.append((msg, on_delivery))
            elif outbox_id in self.refuse:
                msg._error = "broker refused"
                on_delivery("broker refused", msg)
            else:
                on_delivery(None, msg)
        self.pending.extend(kept)

    def flush(self, timeout: float) -> int:
        self.answer()
        return len(self.pending)


def rows(*ids: int) -> list[tuple[int, str, str, bytes]]:
    return [
        (i, "trades.0", "7", encode_envelope(i, "trade.placed", '{"n":1}')) for i in ids
    ]


def test_a_batch_is_stamped_only_once_kafka_answered_all_of_it():
    producer = FakeProducer()
    pipeline = Pipeline(producer, depth=4)
    pipeline.send(rows(1, 2, 3))

    producer.answer(2)
    assert pipeline.take_answered().delivered == []
    producer.answer()
    settled = pipeline.take_answered()

    assert settled.delivered == [1, 2, 3]
    assert settled.clean
    assert len(pipeline) == 0


def test_later_batches_are_read_past_the_ones_in_flight():
    pipeline = Pipeline(FakeProducer(), depth=4)
    assert pipeline.cursor == 0

    pipeline.send(rows(4, 9))
    pipeline.send(rows(12))

    assert pipeline.cursor == 12
    assert len(pipeline) == 2


def test_batches_answered_out_of_order_are_stamped_as_they_complete():
    producer = FakeProducer()
    pipeline = Pipeline(producer, depth=4)
    pipeline.send(rows(1, 2))
    pipeline.send(rows(3))
    producer.hold = {1}

    producer.answer()

    assert pipeline.take_answered().delivered == [3]
    producer.hold = set()
    producer.answer()
    assert pipeline.take_answered().delivered == [1, 2]


def test_refused_messages_are_not_stamped_and_the_rest_are():
    producer = FakeProducer(refuse={2})
    pipeline = Pipeline(producer, depth=4)
    pipeline.send(rows(1, 2, 3))
    producer.answer()

    settled = pipeline.take_answered()

    assert settled.delivered == [1, 3]
    assert [Event.decode(m.value()).event_id for m in settled.failed] == [2]
    assert not settled.clean


def test_a_drain_waits_for_every_answer_and_starts_reading_from_the_oldest_again():
    producer = FakeProducer(hold={5})
    pipeline = Pipeline(producer, depth=4)
    pipeline.send(rows(4, 5, 6))

    settled = pipeline.drain(timeout=1)

    assert settled.delivered == [4, 6]
    assert settled.unanswered == 1
    assert not settled.clean
    assert pipeline.cursor == 0
    assert len(pipeline) == 0


def test_no_more_than_depth_batches_wait_for_kafka():
    producer = FakeProducer()
    pipeline = Pipeline(producer, depth=2)
    pipeline.send(rows(1))
    pipeline.send(rows(2))

    assert not pipeline.wait_for_room(timeout=0.05)
    producer.answer(1)
    assert pipeline.wait_for_room(timeout=0.05)


def test_an_empty_read_adds_no_batch_and_keeps_the_cursor():
    pipeline = Pipeline(FakeProducer(), depth=4)
    pipeline.send(rows(8))

    assert pipeline.send([]) == 0
    assert len(pipeline) == 1
    assert pipeline.cursor == 8
