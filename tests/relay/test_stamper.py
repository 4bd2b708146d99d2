"""The stamper thread on the real PostgreSQL: stamps what it is given, and hands
any failure to the relay loop instead of dying with it."""

from __future__ import annotations

import pytest

from broker.models import OutboxEvent
from relay.stamper import Stamper

pytestmark = pytest.mark.django_db(transaction=True)


def outbox_rows(count: int) -> list[int]:
    return [
        OutboxEvent.objects.create(
            topic="stamper.0", key="1", event_type="test", payload={"n": n}
        ).pk
        for n in range(count)
    ]


def test_submitted_ids_are_stamped_published_once_wait_returns():
    ids = outbox_rows(3)
    stamper = Stamper(depth=2)
    try:
        stamper.submit(ids[:2])
        stamper.submit(ids[2:])
        stamper.wait()
    finally:
        stamper.close()

    assert not OutboxEvent.objects.filter(pk__in=ids, published_at=None).exists()


def test_a_failure_in_the_thread_is_raised_to_the_relay_loop():
    stamper = Stamper(depth=2)

    def broken(*args, **kwargs):
        raise RuntimeError("stamp broke")

    stamper._conn.execute = broken
    try:
        stamper.submit(outbox_rows(1))
        with pytest.raises(RuntimeError, match="stamp broke"):
            stamper.wait()
        with pytest.raises(RuntimeError, match="stamp broke"):
            stamper.submit([1])
    finally:
        stamper.close()
