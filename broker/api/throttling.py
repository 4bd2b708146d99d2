"""Per-customer and per-IP rate limits, counted in Redis so all api processes share
them. Rates are read from settings at request time.

A sliding-window counter (two fixed-window counters, the previous one weighted by
how much of it the sliding window still covers): one pipelined round trip per
request, atomic under concurrency (INCR), O(1) in memory. DRF's own
SimpleRateThrottle keeps every timestamp of the window in one cache value that each
request reads, unpickles, rewrites and pickles again: its cost grows with the rate
(6,000 timestamps per request at the per-IP default) and concurrent requests
overwrite each other's counts.

If Redis is unreachable the request is let through (and logged): an outage of the
rate limiter must not become an outage of trading.
"""

from __future__ import annotations

import functools
import logging
import math
import time

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"1200/minute"`` → (1200, 60): requests allowed per window of seconds."""
    count, period = rate.split("/")
    return int(count), _PERIODS[period.strip()[0]]


@functools.cache
def _redis(url: str) -> redis.Redis:
    # One connection pool per process (thread-safe); short timeouts: the limiter
    # must never hold a request up for long.
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def sliding_window_hit(
    key: str, limit: int, window: int, now: float | None = None
) -> float | None:
    """Count one request under ``key``: None when it is within ``limit`` per
    ``window`` seconds, else the seconds to wait before the next one would be (the
    refused request is not counted)."""
    return sliding_window_hits([(key, limit, window)], now=now)


def sliding_window_hits(
    limits: list[tuple[str, int, int]], now: float | None = None
) -> float | None:
    """Count one request under every (key, limit, window) in one round trip: None
    when it is within all of them, else the seconds to wait until it would be
    (a refused request is counted under none)."""
    now = time.time() if now is None else now
    client = _redis(settings.REDIS_URL)
    pipe = client.pipeline(transaction=True)
    for key, _, window in limits:
        current = int(now // window)
        pipe.incr(f"{key}:{current}")
        pipe.expire(f"{key}:{current}", 2 * window + 1)
        pipe.get(f"{key}:{current - 1}")
    replies = pipe.execute()
    waits = []
    for n, (_, limit, window) in enumerate(limits):
        count, _, previous = replies[3 * n : 3 * n + 3]
        wait = _wait(int(count), int(previous or 0), limit, window, now)
        if wait is not None:
            waits.append(wait)
    if not waits:
        return None
    undo = client.pipeline(transaction=True)
    for key, _, window in limits:
        undo.decr(f"{key}:{int(now // window)}")
    undo.execute()
    return max(waits)


def _wait(count: int, previous: int, limit: int, window: int, now: float):
    """None if ``count`` requests in this window (this one included) and
    ``previous`` in the last one are within ``limit``; else when one more would
    fit, with no other arriving meanwhile."""
    elapsed = (now % window) / window
    if previous * (1 - elapsed) + count <= limit:
        return None
    count -= 1  # this one is refused, so not counted
    if count + 1 <= limit and previous:
        fits_at = 1 - (limit - count - 1) / previous  # later in this window
        return max(0.0, (fits_at - elapsed) * window)
    # Next window: this window's count then weighs (1 - fraction elapsed).
    fits_at = max(0.0, 1 - (limit - 1) / count) if count else 0.0
    return (1 - elapsed) * window + fits_at * window


class _SlidingWindowThrottle(BaseThrottle):
    """Every (scope, setting, ident) of ``limits`` counted in one round trip."""

    def limits(self, request) -> list[tuple[str, str, str]]:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        self._wait: float | None = None
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        checks = []
        for scope, setting_name, ident in self.limits(request):
            limit, window = parse_rate(getattr(settings, setting_name))
            checks.append((f"{prefix}:throttle:{scope}:{ident}", limit, window))
        if not checks:
            return True
        try:
            self._wait = sliding_window_hits(checks)
        except redis.RedisError as exc:
            logger.warning("throttle store unavailable, allowing request: %r", exc)
            return True
        return self._wait is None

    def wait(self) -> float | None:
        # Retry-After is whole seconds: never tell a client 0.
        return None if self._wait is None else max(1, math.ceil(self._wait))


class ApiRateThrottle(_SlidingWindowThrottle):
    """Per customer (``THROTTLE_CUSTOMER_RATE``) and per client address
    (``THROTTLE_IP_RATE``), both counted in one Redis round trip."""

    def limits(self, request) -> list[tuple[str, str, str]]:
        checks = [("ip", "THROTTLE_IP_RATE", self.get_ident(request))]
        if request.user is not None and request.user.is_authenticated:
            checks.append(("customer", "THROTTLE_CUSTOMER_RATE", str(request.user.pk)))
        return checks


class LoginRateThrottle(_SlidingWindowThrottle):
    """Password guessing gets its own, much lower, per-IP budget (on top of the
    address's general one)."""

    def limits(self, request) -> list[tuple[str, str, str]]:
        ident = self.get_ident(request)
        return [
            ("login", "THROTTLE_LOGIN_RATE", ident),
            ("ip", "THROTTLE_IP_RATE", ident),
        ]
