"""Fault injection for tests of the callers: slow, failing and lost answers,
duplicated reports, refused connections.

The operator sets one :class:`FaultConfig` (``POST /admin/faults``; ``{}`` clears
it); every request whose path is under one of ``paths`` then gets a
:class:`FaultPlan` drawn from a seeded RNG (deterministic given the seed and the
order of requests). Faults never apply to ``/admin/*`` or ``/healthz``, so the
operator can always reach the exchange to clear them. Thread-safe.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

EXEMPT_PREFIXES = ("/admin", "/healthz")
DEFAULT_PATHS = ("/orders", "/sessions")
MAX_LATENCY_MS = 60_000
MAX_HOLD_SECONDS = 300
COUNTERS = (
    "delayed",
    "errors",
    "dropped_responses",
    "timeouts",
    "duplicated_reports",
    "refused_connections",
)


class FaultConfigError(ValueError):
    """The body of ``POST /admin/faults`` is malformed; ``errors`` per field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: int = 0
    drop_response_rate: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_hold_s: float = 30.0
    duplicate_reports: bool = False
    refuse_connections: bool = False
    paths: tuple[str, ...] = DEFAULT_PATHS
    seed: int | None = None

    @classmethod
    def parse(cls, body: object) -> FaultConfig:
        """Validate a decoded JSON body; every field optional. Rates and seconds
        may be JSON numbers (they are not money) or decimal strings."""
        if not isinstance(body, dict):
            raise FaultConfigError({"body": ["must be a JSON object"]})
        errors: dict[str, list[str]] = {}
        values: dict[str, Any] = {}
        known = set(cls.__dataclass_fields__)
        for name in sorted(set(body) - known):
            errors[name] = ["unknown field"]
        for name, raw in body.items():
            if name not in known or raw is None:
                continue
            value, message = _PARSERS[name](raw)
            if message:
                errors[name] = [message]
            else:
                values[name] = value
        if errors:
            raise FaultConfigError(errors)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "paths": list(self.paths)}

    def applies_to(self, path: str) -> bool:
        if any(_under(path, prefix) for prefix in EXEMPT_PREFIXES):
            return False
        return any(_under(path, prefix) for prefix in self.paths)


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def _number(raw: object) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float | Decimal):
        return float(raw)
    if isinstance(raw, str):
        try:
            value = float(Decimal(raw))
        except ArithmeticError:
            return None
        return value
    return None


def _rate(raw: object) -> tuple[float | None, str | None]:
    value = _number(raw)
    if value is None or not 0 <= value <= 1:
        return None, "must be a number from 0 to 1"
    return value, None


def _latency(raw: object) -> tuple[int | None, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, int):
        return None, "must be an integer number of milliseconds"
    if not 0 <= raw <= MAX_LATENCY_MS:
        return None, f"must be from 0 to {MAX_LATENCY_MS}"
    return raw, None


def _hold(raw: object) -> tuple[float | None, str | None]:
    value = _number(raw)
    if value is None or not 0 <= value <= MAX_HOLD_SECONDS:
        return None, f"must be a number of seconds from 0 to {MAX_HOLD_SECONDS}"
    return value, None


def _flag(raw: object) -> tuple[bool | None, str | None]:
    if not isinstance(raw, bool):
        return None, "must be true or false"
    return raw, None


def _paths(raw: object) -> tuple[tuple[str, ...] | None, str | None]:
    if (
        not isinstance(raw, list)
        or len(raw) > 20
        or not all(isinstance(p, str) and p.startswith("/") for p in raw)
    ):
        return None, 'must be a list of up to 20 path prefixes like "/orders"'
    return tuple(raw), None


def _seed(raw: object) -> tuple[int | None, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, int):
        return None, "must be an integer"
    return raw, None


_PARSERS = {
    "latency_ms": _latency,
    "drop_response_rate": _rate,
    "error_rate": _rate,
    "timeout_rate": _rate,
    "timeout_hold_s": _hold,
    "duplicate_reports": _flag,
    "refuse_connections": _flag,
    "paths": _paths,
    "seed": _seed,
}


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request. Order: refuse (close before reading the body,
    nothing processed) > delay > error (503, nothing processed) > process, then
    drop (close, no answer) or hold (wait ``hold_s``, then close, no answer)."""

    refuse: bool = False
    delay_s: float = 0.0
    error: bool = False
    drop: bool = False
    hold_s: float | None = None


NO_FAULTS = FaultPlan()


class Faults:
    """The current fault configuration and the counts of injected faults."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._counters = dict.fromkeys(COUNTERS, 0)

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration (not merged) and reset the counters."""
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._counters = dict.fromkeys(COUNTERS, 0)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"config": self.config.to_json(), "counters": dict(self._counters)}

    def plan(self, path: str) -> FaultPlan:
        """The faults to inject into one request to ``path``."""
        with self._lock:
            config = self.config
            if not config.applies_to(path):
                return NO_FAULTS
            if config.refuse_connections:
                self._counters["refused_connections"] += 1
                return FaultPlan(refuse=True)
            # Always draw all three: the stream of draws, and so the faults a
            # given seed injects, does not depend on which rates are zero.
            error, drop, hold = (self._rng.random() for _ in range(3))
            plan = FaultPlan(
                delay_s=config.latency_ms / 1000,
                error=error < config.error_rate,
                drop=error >= config.error_rate and drop < config.drop_response_rate,
                hold_s=(
                    config.timeout_hold_s
                    if error >= config.error_rate
                    and drop >= config.drop_response_rate
                    and hold < config.timeout_rate
                    else None
                ),
            )
            self._count(plan)
            return plan

    def report_copies(self, reports: int) -> int:
        """How many times each of ``reports`` new reports is appended: 2 with
        ``duplicate_reports`` (same report, same exec_id, another seq), else 1."""
        with self._lock:
            if not self.config.duplicate_reports:
                return 1
            self._counters["duplicated_reports"] += reports
            return 2

    def _count(self, plan: FaultPlan) -> None:
        if plan.delay_s:
            self._counters["delayed"] += 1
        if plan.error:
            self._counters["errors"] += 1
        if plan.drop:
            self._counters["dropped_responses"] += 1
        if plan.hold_s is not None:
            self._counters["timeouts"] += 1
