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
    now = time.time() if now is None else now
    current = int(now // window)
    elapsed = (now % window) / window
    client = _redis(settings.REDIS_URL)
    pipe = client.pipeline(transaction=True)
    pipe.incr(f"{key}:{current}")
    pipe.expire(f"{key}:{current}", 2 * window + 1)
    pipe.get(f"{key}:{current - 1}")
    count, _, previous = pipe.execute()
    previous = int(previous or 0)
    if previous * (1 - elapsed) + count <= limit:
        return None
    client.decr(f"{key}:{current}")
    count -= 1
    # When would one more request fit, with no other arriving meanwhile?
    if count + 1 <= limit and previous:
        fits_at = 1 - (limit - count - 1) / previous  # later in this window
        return max(0.0, (fits_at - elapsed) * window)
    # Next window: this window's count then weighs (1 - fraction elapsed).
    fits_at = max(0.0, 1 - (limit - 1) / count) if count else 0.0
    return (1 - elapsed) * window + fits_at * window


class _SlidingWindowThrottle(BaseThrottle):
    scope = ""
    setting_name = ""

    def ident(self, request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        self._wait: float | None = None
        ident = self.ident(request)
        if ident is None:
            return True
        limit, window = parse_rate(getattr(settings, self.setting_name))
        prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
        try:
            self._wait = sliding_window_hit(
                f"{prefix}:throttle:{self.scope}:{ident}", limit, window
            )
        except redis.RedisError as exc:
            logger.warning("throttle store unavailable, allowing request: %r", exc)
            return True
        return self._wait is None

    def wait(self) -> float | None:
        # Retry-After is whole seconds: never tell a client 0.
        return None if self._wait is None else max(1, math.ceil(self._wait))


class CustomerRateThrottle(_SlidingWindowThrottle):
    scope = "customer"
    setting_name = "THROTTLE_CUSTOMER_RATE"

    def ident(self, request) -> str | None:
        if request.user is None or not request.user.is_authenticated:
            return None
        return str(request.user.pk)


class IpRateThrottle(_SlidingWindowThrottle):
    scope = "ip"
    setting_name = "THROTTLE_IP_RATE"

    def ident(self, request) -> str:
        return self.get_ident(request)


class LoginRateThrottle(_SlidingWindowThrottle):
    """Password guessing gets its own, much lower, per-IP budget."""

    scope = "login"
    setting_name = "THROTTLE_LOGIN_RATE"

    def ident(self, request) -> str:
        return self.get_ident(request)
