"""Per-customer and per-IP rate limits, counted in Redis so all api processes share
them. Rates are read from settings at request time.

A sliding-window counter (two fixed-window counters, the previous one weighted by
how much of it the sliding window still covers): one pipelined round trip per
request, atomic under concurrency (INCR), O(1) in memory. DRF's own
SimpleRateThrottle keeps every timestamp of the window in one cache value that each
request reads, unpickles, rewrites and pickles again: its cost grows with the rate
(6,000 timestamps per request at the per-IP default) and concurrent requests
overwrite each other's counts.

If Redis is unreachable, requests authenticated by a token are let through (and
logged): those limits protect capacity, not secrets (a token is 256 random bits,
nothing to guess), and an outage of the rate limiter must not become an outage of
trading, cancels included. Logins fail closed instead (503 ``throttle_unavailable``
with Retry-After): without the counters every request would be an unlimited,
CPU-costly password guess.

The client address is the peer's, or with ``TRUSTED_PROXY_COUNT`` = N the entry
of X-Forwarded-For written by the outermost of the N trusted proxies (the N-th
from the right): whatever a client writes into the header itself sits to the left
of it and is never read.

Logins are also limited per username (``login_attempt_begin``): exponential
lockout after ``LOGIN_LOCKOUT_AFTER`` failures, whatever addresses they come from.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time
import unicodedata

import redis
from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ThrottleUnavailable(exceptions.APIException):
    """Redis is unreachable while a login needs it: logins fail closed (503
    problem ``throttle_unavailable``, broker/api/errors.py)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "logins are paused while the rate limiter is unavailable"
    default_code = "throttle_unavailable"
    # DRF's handler turns ``wait`` into Retry-After.
    wait = 5


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


def client_ip(request) -> str:
    """The client's address (see the module docstring). A header with fewer
    entries than trusted proxies, or whose entry is not an address, did not come
    through them as configured: the peer address is used then."""
    peer = request.META.get("REMOTE_ADDR", "")
    depth = settings.TRUSTED_PROXY_COUNT
    if depth <= 0:
        return peer
    hops = [
        hop.strip()
        for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
        if hop.strip()
    ]
    if len(hops) < depth:
        return peer
    try:
        return str(ipaddress.ip_address(hops[-depth]))
    except ValueError:
        return peer


def ip_ident(address: str) -> str:
    """The throttle bucket of an address: IPv6 by /64 (one subscriber's usual
    allocation, so a client cannot hop through 2**64 addresses of its own)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)


def _key_prefix() -> str:
    return settings.CACHES["default"].get("KEY_PREFIX", "")


class _SlidingWindowThrottle(BaseThrottle):
    """Every (scope, setting, ident) of ``limits`` counted in one round trip."""

    # What to do when Redis does not answer: let the request through (True) or
    # refuse it with a 503 (False).
    fail_open = True

    def limits(self, request) -> list[tuple[str, str, str]]:
        raise NotImplementedError

    def get_ident(self, request) -> str:
        # DRF's own would trust the whole X-Forwarded-For header (NUM_PROXIES).
        return ip_ident(client_ip(request))

    def allow_request(self, request, view) -> bool:
        self._wait: float | None = None
        prefix = _key_prefix()
        checks = []
        for scope, setting_name, ident in self.limits(request):
            limit, window = parse_rate(getattr(settings, setting_name))
            checks.append((f"{prefix}:throttle:{scope}:{ident}", limit, window))
        if not checks:
            return True
        try:
            self._wait = sliding_window_hits(checks)
        except redis.RedisError as exc:
            if not self.fail_open:
                logger.warning("throttle store unavailable, refusing login: %r", exc)
                raise ThrottleUnavailable() from exc
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
    address's general one). Fails closed: see the module docstring."""

    fail_open = False

    def limits(self, request) -> list[tuple[str, str, str]]:
        ident = self.get_ident(request)
        return [
            ("login", "THROTTLE_LOGIN_RATE", ident),
            ("ip", "THROTTLE_IP_RATE", ident),
        ]


# --- Per-username login backoff ----------------------------------------------

# One atomic step per attempt, before its password is checked: refused while the
# username is locked (the lock's remaining milliseconds), else counted as a
# failure until the login succeeds (login_attempt_succeeded clears the count).
# Counting first means parallel guesses cannot slip past the lock while the
# password hashes of the earlier ones are still being computed.
_BEGIN_ATTEMPT = """
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return locked end
local failures = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local after, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if failures >= after then
  local seconds = math.min(cap, base * 2 ^ (failures - after))
  redis.call('SET', KEYS[2], '1', 'EX', math.max(1, math.floor(seconds)))
end
return 0
"""


def username_ident(username: str) -> str:
    """A username as a counter key: normalised as Django normalises usernames
    (NFKC) and case-folded, so the variants of one name share a count; hashed,
    so keys are bounded and hold no names."""
    name = unicodedata.normalize("NFKC", username.strip()).casefold()
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _login_keys(username: str) -> list[str]:
    # Known and unknown usernames are counted and locked alike, so a lockout
    # tells nothing about whether an account exists.
    base = f"{_key_prefix()}:login:{username_ident(username)}"
    return [f"{base}:failures", f"{base}:lock"]


def login_attempt_begin(username: str) -> float | None:
    """Count a login attempt of ``username`` before its password is checked:
    None if it may proceed, else the seconds until the username's lock ends.

    After ``LOGIN_LOCKOUT_AFTER`` attempts without a success the username is
    locked for ``LOGIN_LOCKOUT_SECONDS``, doubled for each further failed attempt
    up to ``LOGIN_LOCKOUT_MAX_SECONDS``; attempts refused while locked do not
    count (a lock is not extended by knocking on it). Raises ThrottleUnavailable
    when Redis does not answer (fail closed)."""
    client = _redis(settings.REDIS_URL)
    try:
        locked_ms = client.eval(
            _BEGIN_ATTEMPT,
            2,
            *_login_keys(username),
            settings.LOGIN_LOCKOUT_AFTER,
            settings.LOGIN_LOCKOUT_SECONDS,
            settings.LOGIN_LOCKOUT_MAX_SECONDS,
            settings.LOGIN_FAILURE_MEMORY_HOURS * 3600,
        )
    except redis.RedisError as exc:
        logger.warning("throttle store unavailable, refusing login: %r", exc)
        raise ThrottleUnavailable() from exc
    return int(locked_ms) / 1000 if int(locked_ms) > 0 else None


def login_attempt_succeeded(username: str) -> None:
    """The password was right: forget the username's failures and any lock.
    Raises ThrottleUnavailable when Redis does not answer, and the caller issues
    no token: a login that cannot reach the counters is refused, whatever step
    finds out."""
    try:
        _redis(settings.REDIS_URL).delete(*_login_keys(username))
    except redis.RedisError as exc:
        logger.warning("throttle store unavailable, refusing login: %r", exc)
        raise ThrottleUnavailable() from exc
