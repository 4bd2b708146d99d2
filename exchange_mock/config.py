"""Configuration from environment variables, with safe local defaults.

- ``EXCHANGE_URL`` (``http://127.0.0.1:8100``): host and port to bind.
- ``EXCHANGE_HOST`` / ``EXCHANGE_PORT``: override the host / port of the URL.
- ``EXCHANGE_SEED`` (42): seed of the quote random walk.
- ``EXCHANGE_TICK_SECONDS`` (0.5): period of one quote step; 0 freezes quotes.
- ``EXCHANGE_STORE`` (``:memory:``): SQLite file of orders, executions, report
  feeds, session epochs and the market state.
- ``EXCHANGE_TOUCH_SIZE`` (1000): quantity offered at the bid and at the ask.
- ``EXCHANGE_ALWAYS_OPEN`` (1): the market never closes on its own (only the
  admin API closes it); 0 follows the market hours below.
- ``EXCHANGE_MARKET_OPEN`` / ``EXCHANGE_MARKET_CLOSE`` (09:30 / 16:00): market
  hours in UTC, Monday to Friday.
- ``EXCHANGE_CLOCK_START`` (now): exchange time at process start, ISO-8601
  (without an offset: UTC).
- ``EXCHANGE_CLOCK_SPEED`` (1): exchange seconds per real second.
- ``LOG_LEVEL`` (INFO).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as daytime
from decimal import Decimal
from urllib.parse import urlsplit

from exchange_mock.clock import DEFAULT_CLOSE, DEFAULT_OPEN
from exchange_mock.orders import MAX_QUANTITY, QUANTITY_STEP
from exchange_mock.quotes import DEFAULT_TOUCH_SIZE
from exchange_mock.wire import parse_decimal

DEFAULT_URL = "http://127.0.0.1:8100"


class ConfigError(ValueError):
    """An environment variable holds a value the exchange cannot use."""


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8100
    seed: int = 42
    tick_seconds: float = 0.5
    store_path: str = ":memory:"
    log_level: int = logging.INFO
    touch_size: Decimal = DEFAULT_TOUCH_SIZE
    always_open: bool = True
    market_open: daytime = DEFAULT_OPEN
    market_close: daytime = DEFAULT_CLOSE
    clock_start: datetime | None = None  # None: the time the process starts
    clock_speed: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """Read the configuration; raises :class:`ConfigError` on a bad value."""
        env = os.environ if env is None else env
        url = env.get("EXCHANGE_URL") or DEFAULT_URL
        try:
            parts = urlsplit(url)
            url_port = parts.port
        except ValueError as exc:
            raise ConfigError(f"EXCHANGE_URL={url!r}: {exc}") from exc
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"EXCHANGE_URL={url!r}: expected http://host:port")
        host = env.get("EXCHANGE_HOST") or parts.hostname
        port = _int(env, "EXCHANGE_PORT", url_port if url_port is not None else 80)
        if not 0 <= port <= 65535:
            raise ConfigError(f"EXCHANGE_PORT={port}: out of range")
        tick = _float(env, "EXCHANGE_TICK_SECONDS", 0.5)
        if tick < 0 or not math.isfinite(tick):
            raise ConfigError(f"EXCHANGE_TICK_SECONDS={tick}: must be >= 0")
        speed = _float(env, "EXCHANGE_CLOCK_SPEED", 1.0)
        if speed <= 0 or not math.isfinite(speed):
            raise ConfigError(f"EXCHANGE_CLOCK_SPEED={speed}: must be > 0")
        market_open = _time(env, "EXCHANGE_MARKET_OPEN", DEFAULT_OPEN)
        market_close = _time(env, "EXCHANGE_MARKET_CLOSE", DEFAULT_CLOSE)
        if not market_open < market_close:
            raise ConfigError(
                f"EXCHANGE_MARKET_OPEN={market_open} must be before "
                f"EXCHANGE_MARKET_CLOSE={market_close}"
            )
        level_name = (env.get("LOG_LEVEL") or "INFO").upper()
        level = logging.getLevelName(level_name)
        if not isinstance(level, int):
            raise ConfigError(f"LOG_LEVEL={level_name!r}: unknown level")
        return cls(
            host=host,
            port=port,
            seed=_int(env, "EXCHANGE_SEED", 42),
            tick_seconds=tick,
            store_path=env.get("EXCHANGE_STORE") or ":memory:",
            log_level=level,
            touch_size=_touch_size(env),
            always_open=_bool(env, "EXCHANGE_ALWAYS_OPEN", True),
            market_open=market_open,
            market_close=market_close,
            clock_start=_datetime(env, "EXCHANGE_CLOCK_START"),
            clock_speed=speed,
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: not an integer") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: not a number") from exc


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def _time(env: Mapping[str, str], name: str, default: daytime) -> daytime:
    raw = env.get(name)
    if not raw:
        return default
    try:
        parsed = daytime.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: expected HH:MM (UTC)") from exc
    if parsed.tzinfo is not None:
        raise ConfigError(f"{name}={raw!r}: give the time without an offset (UTC)")
    return parsed


def _datetime(env: Mapping[str, str], name: str) -> datetime | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: expected an ISO-8601 date-time") from exc
    # A naive time is UTC: the exchange's clock and market hours are UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _touch_size(env: Mapping[str, str]) -> Decimal:
    raw = env.get("EXCHANGE_TOUCH_SIZE")
    if not raw:
        return DEFAULT_TOUCH_SIZE
    value, message = parse_decimal(
        raw, maximum=MAX_QUANTITY, step=QUANTITY_STEP, places=6
    )
    if message or value is None:
        raise ConfigError(f"EXCHANGE_TOUCH_SIZE={raw!r}: {message}")
    return value
