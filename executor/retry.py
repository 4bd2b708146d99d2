"""Retrying, defined once for the executor: exponential backoff for outages, and the
poison rule — work that fails the same way ``poison_attempts`` times is given up on
(the caller dead-letters it), so one bad message never stalls the work behind it.
Fencing is never retried: losing the leadership ends the work at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections

from executor.fencing import Fence, Fenced

logger = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL away: an outage, waited out, never counted against a message.
DATABASE_OUTAGES = (OperationalError, InterfaceError)


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float = 0.05
    max_delay: float = 2.0
    # Work that fails this many times (outages not counted) is given up on.
    poison_attempts: int = 3

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1, 2, ...)."""
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay)


DEFAULT_RETRY = RetryPolicy()


class Backoff:
    """Exponential delays for retrying while something is unreachable: the first
    delay, then twice the last, up to the maximum; ``reset`` after a success."""

    def __init__(self, policy: RetryPolicy = DEFAULT_RETRY) -> None:
        self._policy = policy
        self._attempt = 0

    def next(self) -> float:
        self._attempt += 1
        return self._policy.delay(self._attempt)

    def reset(self) -> None:
        self._attempt = 0


class Poisoned(Exception):
    """The work failed ``attempts`` times for a reason that is not an outage."""

    def __init__(self, attempts: int, cause: BaseException) -> None:
        self.reason = f"failed {attempts} times: {type(cause).__name__}: {cause}"
        super().__init__(self.reason)


def until_poisoned(
    call: Callable[[], T],
    *,
    fence: Fence,
    policy: RetryPolicy,
    what: str,
    wait_outages: bool = True,
) -> T:
    """``call()`` until it succeeds. Fenced propagates at once; a database outage
    is waited out (or, with ``wait_outages=False``, propagates for the caller to
    wait); any other failure is retried with backoff and, at the
    ``policy.poison_attempts``-th, raises Poisoned for the caller to set the work
    aside. ``what`` names the work in the log."""
    failures = 0
    while True:
        try:
            return call()
        except Fenced:
            raise
        except DATABASE_OUTAGES as exc:
            if not wait_outages:
                raise
            logger.warning("database unavailable, retrying %s: %s", what, exc)
            close_old_connections()
            fence.wait_or_raise(policy.max_delay)
        except Exception as exc:
            failures += 1
            logger.exception("%s failed attempt=%s", what, failures)
            if failures >= policy.poison_attempts:
                raise Poisoned(failures, exc) from exc
            fence.wait_or_raise(policy.delay(failures + 1))
