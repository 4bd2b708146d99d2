"""Fault injection for tests of the callers: slow, failing and refused HTTP
answers, duplicated reports, and faults of the FIX link.

The operator sets one :class:`FaultConfig` (``POST /admin/faults``; ``{}`` clears
it); every HTTP request whose path is under one of ``paths`` (by default the
market data: ``/quotes``, ``/symbols``, ``/clock``) then gets a
:class:`FaultPlan` drawn from a seeded RNG (deterministic given the seed and the
order of requests). Faults never apply to ``/admin/*`` or ``/healthz``, so the
operator can always reach the exchange to clear them. ``duplicate_reports``
acts on the report feeds (every report appended twice: two ExecutionReports,
one ExecID). Thread-safe.

The ``fix_*`` fields act on the FIX acceptor (``paths`` does not apply there):

- ``fix_disconnect_after`` N: every N-th application message received (over all
  FIX sessions, counted from the configuration) is processed, then the
  connection is cut — no Logout, its reports not yet written (they follow the
  next logon);
- ``fix_latency_ms``: each application message received waits this long before
  it is processed (session messages are not delayed: heartbeats keep going);
- ``fix_duplicate_rate``: an ExecutionReport is written, then written again as a
  retransmission (same MsgSeqNum, PossDupFlag=Y, OrigSendingTime);
- ``fix_garble_rate``: an ExecutionReport is written with one body byte changed,
  so its CheckSum fails (the peer drops it and asks for it again);
- ``fix_withhold_rate``: an ExecutionReport is journaled but not written (the
  peer sees the gap at the next message and asks for it again);
- ``fix_refuse_logons``: every Logon is answered with a Logout;
- ``fix_fill_outside_limit``: the fill reports of limit orders carry a LastPx this
  far beyond the limit (above a buy's, below a sell's) — the order's real
  execution is unchanged: the exchange misreports it, as a broken venue would.

Garble, withhold and duplicate strike a report's first transmission only: a
resend from the journal is always clean, so every gap can be recovered.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

EXEMPT_PREFIXES = ("/admin", "/healthz")
# What the broker's HTTP client reads: its quotes (orders go over FIX).
DEFAULT_PATHS = ("/quotes", "/symbols", "/clock")
MAX_LATENCY_MS = 60_000
MAX_FILL_SHIFT = Decimal("1000000")
COUNTERS = (
    "delayed",
    "errors",
    "duplicated_reports",
    "refused_connections",
    "fix_disconnects",
    "fix_delayed",
    "fix_duplicated_reports",
    "fix_garbled_reports",
    "fix_withheld_reports",
    "fix_refused_logons",
    "fix_fills_outside_limit",
)


class FaultConfigError(ValueError):
    """The body of ``POST /admin/faults`` is malformed; ``errors`` per field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {', '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: int = 0
    error_rate: float = 0.0
    duplicate_reports: bool = False
    refuse_connections: bool = False
    paths: tuple[str, ...] = DEFAULT_PATHS
    seed: int | None = None
    fix_disconnect_after: int = 0
    fix_latency_ms: int = 0
    fix_duplicate_rate: float = 0.0
    fix_garble_rate: float = 0.0
    fix_withhold_rate: float = 0.0
    fix_refuse_logons: bool = False
    fix_fill_outside_limit: Decimal | None = None

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
        shift = self.fix_fill_outside_limit
        return {
            **asdict(self),
            "paths": list(self.paths),
            # A decimal travels as a string, as every decimal of the exchange.
            "fix_fill_outside_limit": None if shift is None else str(shift),
        }

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
        return None, 'must be a list of up to 20 path prefixes like "/quotes"'
    return tuple(raw), None


def _seed(raw: object) -> tuple[int | None, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, int):
        return None, "must be an integer"
    return raw, None


def _count(raw: object) -> tuple[int | None, str | None]:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 10**9:
        return None, "must be an integer from 0 (off) to 1000000000"
    return raw, None


def _shift(raw: object) -> tuple[Decimal | None, str | None]:
    """A price distance: a decimal string (or number) from 0 to 1000000, at most
    4 decimal places; 0 turns the fault off."""
    message = f"must be a decimal from 0 to {MAX_FILL_SHIFT}, at most 4 places"
    if isinstance(raw, bool) or not isinstance(raw, int | Decimal | str):
        return None, message
    try:
        value = Decimal(raw)
    except ArithmeticError:
        return None, message
    if (
        not value.is_finite()
        or not 0 <= value <= MAX_FILL_SHIFT
        or value != value.quantize(Decimal("0.0001"))
    ):
        return None, message
    return (value if value else None), None


_PARSERS = {
    "latency_ms": _latency,
    "error_rate": _rate,
    "duplicate_reports": _flag,
    "refuse_connections": _flag,
    "paths": _paths,
    "seed": _seed,
    "fix_disconnect_after": _count,
    "fix_latency_ms": _latency,
    "fix_duplicate_rate": _rate,
    "fix_garble_rate": _rate,
    "fix_withhold_rate": _rate,
    "fix_refuse_logons": _flag,
    "fix_fill_outside_limit": _shift,
}


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request. Order: refuse (close before reading the body,
    nothing processed) > delay > error (503, nothing processed) > process."""

    refuse: bool = False
    delay_s: float = 0.0
    error: bool = False


NO_FAULTS = FaultPlan()


@dataclass(frozen=True)
class ReportFaults:
    """What to do to the first transmission of one ExecutionReport: withhold
    (journal, do not write) > garble (write with a bad CheckSum) > duplicate
    (write, then write again with PossDupFlag=Y)."""

    withhold: bool = False
    garble: bool = False
    duplicate: bool = False


NO_REPORT_FAULTS = ReportFaults()


class Faults:
    """The current fault configuration and the counts of injected faults."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._fix_messages = 0  # application messages seen, for fix_disconnect_after

    def configure(self, config: FaultConfig) -> None:
        """Replace the configuration (not merged) and reset the counters."""
        with self._lock:
            self.config = config
            self._rng = random.Random(config.seed)
            self._counters = dict.fromkeys(COUNTERS, 0)
            self._fix_messages = 0

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
            plan = FaultPlan(
                delay_s=config.latency_ms / 1000,
                error=self._rng.random() < config.error_rate,
            )
            if plan.delay_s:
                self._counters["delayed"] += 1
            if plan.error:
                self._counters["errors"] += 1
            return plan

    def report_copies(self, reports: int) -> int:
        """How many times each of ``reports`` new reports is appended: 2 with
        ``duplicate_reports`` (same report, same exec_id, another seq), else 1."""
        with self._lock:
            if not self.config.duplicate_reports:
                return 1
            self._counters["duplicated_reports"] += reports
            return 2

    # --- the FIX link ---

    def fix_latency(self) -> float:
        """Seconds to wait before processing one application message received
        over FIX."""
        with self._lock:
            delay = self.config.fix_latency_ms / 1000
            if delay:
                self._counters["fix_delayed"] += 1
            return delay

    def fix_disconnect_due(self) -> bool:
        """Called once per application message processed over FIX: True if the
        connection is to be cut now (every ``fix_disconnect_after``-th one)."""
        with self._lock:
            every = self.config.fix_disconnect_after
            if not every:
                return False
            self._fix_messages += 1
            if self._fix_messages % every:
                return False
            self._counters["fix_disconnects"] += 1
            return True

    def fix_report(self) -> ReportFaults:
        """The faults of one ExecutionReport's first transmission."""
        with self._lock:
            config = self.config
            if not (
                config.fix_withhold_rate
                or config.fix_garble_rate
                or config.fix_duplicate_rate
            ):
                return NO_REPORT_FAULTS
            withhold, garble, duplicate = (self._rng.random() for _ in range(3))
            faults = ReportFaults(
                withhold=withhold < config.fix_withhold_rate,
                garble=withhold >= config.fix_withhold_rate
                and garble < config.fix_garble_rate,
                duplicate=withhold >= config.fix_withhold_rate
                and garble >= config.fix_garble_rate
                and duplicate < config.fix_duplicate_rate,
            )
            for flag, counter in (
                (faults.withhold, "fix_withheld_reports"),
                (faults.garble, "fix_garbled_reports"),
                (faults.duplicate, "fix_duplicated_reports"),
            ):
                if flag:
                    self._counters[counter] += 1
            return faults

    def fix_refuse_logon(self) -> bool:
        with self._lock:
            if self.config.fix_refuse_logons:
                self._counters["fix_refused_logons"] += 1
                return True
            return False

    def fix_fill_shift(self) -> Decimal | None:
        """How far beyond its limit to report a limit order's fill (None: at its
        real price). Counted by the caller once per report it falsifies."""
        with self._lock:
            return self.config.fix_fill_outside_limit

    def count_fill_outside_limit(self) -> None:
        with self._lock:
            self._counters["fix_fills_outside_limit"] += 1
