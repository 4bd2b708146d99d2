"""The sliding-window rate limiter on the real Redis."""

import random
import threading
import uuid

import pytest
from django.test import override_settings

from broker.api.throttling import parse_rate, sliding_window_hit, sliding_window_hits
from tests.broker.api.conftest import client_for
from tests.factories import make_customer

WINDOW = 60
# The middle of a window far from now: the test's keys are its own anyway.
T = 60 * 1_000_000 + 30


def key() -> str:
    return f"test-throttle:{uuid.uuid4().hex}"


def test_rates_parse_to_requests_per_window():
    assert parse_rate("1200/minute") == (1200, 60)
    assert parse_rate("30/m") == (30, 60)
    assert parse_rate("5/second") == (5, 1)
    assert parse_rate("100/hour") == (100, 3600)


def test_the_limit_holds_within_a_window_and_refusals_are_not_counted():
    k = key()
    assert [sliding_window_hit(k, 3, WINDOW, now=T) for _ in range(3)] == [None] * 3
    waits = [sliding_window_hit(k, 3, WINDOW, now=T + 1) for _ in range(5)]
    # Nothing fits before the next window: 29 s left of this one, and there the
    # three requests still weigh until a third of it has passed.
    assert waits == [pytest.approx(29 + 20)] * 5


def test_the_previous_window_weighs_by_how_much_of_it_is_still_covered():
    k = key()
    for _ in range(3):
        assert sliding_window_hit(k, 3, WINDOW, now=T) is None
    # Half-way through the next window the three weigh 1.5: one more fits...
    assert sliding_window_hit(k, 3, WINDOW, now=T + WINDOW) is None
    # ...the next only once they weigh 1 (two thirds through): 10 s later.
    wait = sliding_window_hit(k, 3, WINDOW, now=T + WINDOW)
    assert wait == pytest.approx(10)
    assert sliding_window_hit(k, 3, WINDOW, now=T + WINDOW + 10) is None


def test_concurrent_requests_are_counted_exactly():
    k, allowed = key(), []
    barrier = threading.Barrier(20)

    def hit() -> None:
        barrier.wait()
        allowed.append(sliding_window_hit(k, 10, WINDOW, now=T) is None)

    threads = [threading.Thread(target=hit) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 10


@pytest.mark.django_db
@override_settings(THROTTLE_IP_RATE="2/minute")
def test_every_customer_behind_one_address_shares_its_rate():
    ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"
    tokens = [make_customer()[1] for _ in range(3)]
    statuses = [
        client_for(token).get("/api/v1/account", REMOTE_ADDR=ip).status_code
        for token in tokens
    ]
    assert statuses == [200, 200, 429]
    other_ip = client_for(tokens[2]).get("/api/v1/account", REMOTE_ADDR="10.0.0.1")
    assert other_ip.status_code == 200


def test_a_request_refused_by_one_limit_counts_against_none():
    tight, loose = key(), key()
    both = [(tight, 1, WINDOW), (loose, 100, WINDOW)]
    assert sliding_window_hits(both, now=T) is None
    for _ in range(3):
        assert sliding_window_hits(both, now=T) is not None
    # The loose limit saw only the request that was let through.
    assert sliding_window_hits([(loose, 1, WINDOW)], now=T) is not None
    assert sliding_window_hits([(loose, 2, WINDOW)], now=T) is None
