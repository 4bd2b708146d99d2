"""Waiting for a condition with a deadline (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(Exception):
    """The deadline passed; the message names what was awaited and the last error."""


class ProcessExited(Exception):
    """The process we were waiting on died, so waiting longer is pointless."""


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    alive: Callable[[], bool] | None = None,
) -> T:
    """Call ``probe`` until it returns a truthy value, and return that value.

    A probe that raises counts as "not yet"; the last exception is quoted in the
    ``WaitTimeout`` raised once ``timeout`` seconds have passed (the probe is always
    tried at least once). If ``alive`` is given and returns False, ``ProcessExited``
    is raised at once. Probes should bound their own duration (client timeouts), as
    a probe in progress is never interrupted.
    """
    deadline = time.monotonic() + timeout
    last_error: str = "not ready"
    while True:
        try:
            result = probe()
        except Exception as exc:  # any failure of a client call means "not yet"
            last_error = f"{type(exc).__name__}: {exc}".strip()
        else:
            if result:
                return result
            last_error = "not ready"
        if alive is not None and not alive():
            raise ProcessExited(f"process exited while waiting for {what}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {what} ({last_error})"
            )
        time.sleep(min(interval, remaining))
