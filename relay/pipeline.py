"""The relay's batches between produce() and the stamp: several batches in flight at
once, so reading and stamping in PostgreSQL overlap Kafka's acknowledgements
instead of waiting for them (a flush per batch halves even a bare producer's rate).

Only bookkeeping lives here: which outbox ids Kafka confirmed, which it refused,
and the read cursor (the highest id produced), so the next SELECT skips rows that
are in flight but not yet stamped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import KafkaError, Message

from broker.events import Event

# Serve delivery reports every so many produce() calls: each poll() takes
# librdkafka's locks, so once per message was a third of the relay's time.
POLL_EVERY = 64


class _Producer(Protocol):
    def produce(
        self, topic: str, *, key: str | bytes, value: bytes, on_delivery
    ) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...


class _Batch:
    """The rows of one SELECT, and what Kafka answered for each."""

    __slots__ = ("delivered", "failed", "ids")

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.delivered: list[Message] = []
        self.failed: list[Message] = []

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        (self.failed if err is not None else self.delivered).append(msg)

    @property
    def answered(self) -> bool:
        return self.unanswered == 0

    @property
    def unanswered(self) -> int:
        return len(self.ids) - len(self.delivered) - len(self.failed)

    def delivered_ids(self) -> list[int]:
        if len(self.delivered) == len(self.ids):
            return self.ids
        # Only what Kafka confirmed: identify it (rare path) by its envelope.
        return [Event.decode(msg.value()).event_id for msg in self.delivered]


@dataclass
class Settled:
    """Batches taken off the pipeline: ids to stamp published, and the rest."""

    delivered: list[int] = field(default_factory=list)
    failed: list[Message] = field(default_factory=list)
    # Sent but unanswered when the wait gave up (still in the producer's queue).
    unanswered: int = 0

    @property
    def clean(self) -> bool:
        return not self.failed and not self.unanswered


class Pipeline:
    """Produced, not yet stamped batches, oldest first, at most ``depth`` of them
    waiting for Kafka."""

    def __init__(self, producer: _Producer, depth: int) -> None:
        self._producer = producer
        self._depth = depth
        self._batches: list[_Batch] = []
        # Highest outbox id produced since the last drain, which resets it: a row
        # committed late with a lower id is read after the next drain.
        self.cursor = 0

    def __len__(self) -> int:
        return len(self._batches)

    def send(self, rows: Iterable[tuple[int, str, str | bytes, bytes]]) -> int:
        """Produce (id, topic, key, value) rows as one batch; returns its size."""
        batch = _Batch([])
        produce, poll = self._producer.produce, self._producer.poll
        for n, (outbox_id, topic, key, value) in enumerate(rows, 1):
            batch.ids.append(outbox_id)
            produce(topic, key=key, value=value, on_delivery=batch.on_delivery)
            if n % POLL_EVERY == 0:
                poll(0)
        if batch.ids:
            self._batches.append(batch)
            self.cursor = batch.ids[-1]
        return len(batch.ids)

    def wait_for_room(self, timeout: float) -> bool:
        """Serve delivery reports until fewer than ``depth`` batches wait for Kafka;
        False if that did not happen within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._waiting() >= self._depth:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._producer.poll(min(0.05, remaining))
        return True

    def take_answered(self) -> Settled:
        """Serve the delivery reports already in, and take every fully answered
        batch off the pipeline (in any order: they hold different rows)."""
        self._producer.poll(0)
        settled = Settled()
        keep: list[_Batch] = []
        for batch in self._batches:
            if batch.answered:
                settled.delivered.extend(batch.delivered_ids())
                settled.failed.extend(batch.failed)
            else:
                keep.append(batch)
        self._batches = keep
        return settled

    def drain(self, timeout: float) -> Settled:
        """Wait for Kafka to answer everything sent (at most ``timeout`` seconds),
        then take every batch off the pipeline and reset the cursor."""
        if self._batches:
            self._producer.flush(timeout)
        settled = Settled()
        for batch in self._batches:
            settled.delivered.extend(batch.delivered_ids())
            settled.failed.extend(batch.failed)
            settled.unanswered += batch.unanswered
        self._batches = []
        self.cursor = 0
        return settled

    def _waiting(self) -> int:
        return sum(1 for batch in self._batches if not batch.answered)
