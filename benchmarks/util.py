"""Small helpers shared by the measurements: percentiles and a progress line
(deadlines are ``devstack.wait.wait_until``)."""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence

# The quantiles kept for every latency distribution in the results JSON (enough to
# draw a CDF and read any percentile off it without storing every sample).
CDF_POINTS = (
    [0.0, 0.01, 0.05]
    + [i / 100 for i in range(10, 100, 5)]
    + [0.96, 0.97, 0.98, 0.99, 0.995, 0.999, 1.0]
)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear-interpolated percentile (pct in 0..100); None without samples."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = pct / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summary_ms(values_s: Sequence[float]) -> dict:
    """p50/p90/p99/p99.9/max in milliseconds and the sample count, from seconds."""
    ms = [v * 1000 for v in values_s]
    return {
        "count": len(ms),
        "p50_ms": _round(percentile(ms, 50)),
        "p90_ms": _round(percentile(ms, 90)),
        "p99_ms": _round(percentile(ms, 99)),
        "p999_ms": _round(percentile(ms, 99.9)),
        "max_ms": _round(max(ms) if ms else None),
        "mean_ms": _round(sum(ms) / len(ms) if ms else None),
    }


def cdf_ms(values_s: Sequence[float]) -> dict:
    """The distribution as (quantile, milliseconds) pairs, for the plots."""
    ms = sorted(v * 1000 for v in values_s)
    if not ms:
        return {"q": [], "ms": []}
    return {
        "q": list(CDF_POINTS),
        "ms": [_round(percentile(ms, q * 100)) for q in CDF_POINTS],
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def rnd(value: float | None, digits: int = 2) -> float | None:
    return _round(value, digits)


class Progress:
    """One status line while the suite runs: rewritten in place on a terminal,
    one line per update (at most one per second per step) otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.started = time.monotonic()
        self.section = ""
        self._last_line = ""
        self._last_print = 0.0

    def set_section(self, name: str) -> None:
        self.section = name
        self.update("starting")

    def update(self, message: str, *, force: bool = False) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[bench {elapsed:6.1f}s] {self.section}: {message}"
        if self.tty:
            width = max(20, _terminal_width() - 1)
            self.stream.write("\r" + line[:width].ljust(width))
            self.stream.flush()
        else:
            now = time.monotonic()
            if force or (message != self._last_line and now - self._last_print >= 1.0):
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_print = now
        self._last_line = message

    def log(self, message: str) -> None:
        """A line that stays (a finished step, a warning)."""
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.stream.write("\r" + " " * (_terminal_width() - 1) + "\r")
        self.stream.write(f"[bench {elapsed:6.1f}s] {message}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return 100


def sleep_with_progress(
    seconds: float, progress: Progress, message: str, step: float = 0.5
) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        progress.update(f"{message} ({left:.0f}s left)")
        time.sleep(min(step, left))
