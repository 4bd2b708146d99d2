"""Waiting for a condition with a deadline, never a fixed sleep: the one helper the
stack, the demo, the tests and the benchmarks use."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class NotReady(Exception):
    """What was awaited did not happen."""


class WaitTimeout(NotReady):
    """The deadline passed; the message names what was awaited and the last error."""


class ProcessExited(NotReady):
    """The process we were waiting on died, so waiting longer is pointless."""


def wait_until(
    probe: Callable[[], T],
    *,
    timeout: float,
    what: str = "condition",
    interval: float = 0.05,
    alive: Callable[[], bool] | None = None,
    retry_on: tuple[type[Exception], ...] = (),
    progress: Callable[[float], None] | None = None,
) -> T:
    """Call ``probe`` until it returns a truthy value, and return that value.

    The probe is always tried at least once. An exception of a ``retry_on`` type
    counts as "not yet" (the last one is quoted in the ``WaitTimeout`` raised once
    ``timeout`` seconds have passed); any other propagates at once. If ``alive`` is
    given and returns False, ``ProcessExited`` is raised at once. ``progress`` is
    called with the seconds elapsed after every unsuccessful try. Probes should
    bound their own duration (client timeouts): a probe in progress is never
    interrupted.
    """
    started = time.monotonic()
    deadline = started + timeout
    last_error = "not ready"
    while True:
        try:
            result = probe()
        except retry_on as exc:
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
        if progress is not None:
            progress(time.monotonic() - started)
        time.sleep(min(interval, remaining))
