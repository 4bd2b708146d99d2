"""Configuration from environment variables, with safe local defaults.

- ``EXCHANGE_URL`` (``http://127.0.0.1:8100``): the port to bind (and the host,
  when it is a loopback one: the exchange binds loopback unless told otherwise).
- ``EXCHANGE_HOST`` / ``EXCHANGE_PORT``: the interface / port to bind; a
  non-loopback host (``0.0.0.0`` in a container) requires ``EXCHANGE_ADMIN_TOKEN``.
- ``EXCHANGE_ADMIN_TOKEN`` (none): when set (at least 16 characters), the
  ``/admin/*`` routes require ``Authorization: Bearer <token>``.
- ``EXCHANGE_QUOTES_PORT`` (none): also serve the market data (``/quotes``,
  ``/symbols``, ``/clock``, ``/healthz``, nothing else) on this port, for clients
  that may see prices but must not reach orders or the admin routes.
- ``EXCHANGE_FIX_HOST`` / ``EXCHANGE_FIX_PORT`` (the HTTP host / 8101): where the
  FIX 4.4 acceptor listens (port 0: any free port).
- ``EXCHANGE_FIX_COMP_ID`` (``EXCHANGE``): the acceptor's CompID, the
  TargetCompID every Logon must name.
- ``EXCHANGE_FIX_USERNAME`` / ``EXCHANGE_FIX_PASSWORD`` (none): when set, a Logon
  must carry them in Username(553) / Password(554).
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

import ipaddress
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
from exchange_mock.fixrules import COMP_ID_RE
from exchange_mock.orders import MAX_QUANTITY, QUANTITY_STEP
from exchange_mock.quotes import DEFAULT_TOUCH_SIZE
from exchange_mock.wire import parse_decimal

DEFAULT_URL = "http://127.0.0.1:8100"
LOOPBACK = "127.0.0.1"
ADMIN_TOKEN_ENV = "EXCHANGE_ADMIN_TOKEN"
MIN_ADMIN_TOKEN_LENGTH = 16
DEFAULT_FIX_PORT = 8101
DEFAULT_FIX_COMP_ID = "EXCHANGE"


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
    # None: the admin routes are open (only allowed on a loopback address).
    admin_token: str | None = None
    # None: the market data is served on ``port`` only (with everything else).
    quotes_port: int | None = None
    fix_host: str = "127.0.0.1"
    fix_port: int = 8101
    fix_comp_id: str = "EXCHANGE"
    # None: not checked.
    fix_username: str | None = None
    fix_password: str | None = None

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
        # The URL is how clients reach the exchange (through a port mapping or a
        # Service, say): it chooses the interface only when that is loopback.
        host = env.get("EXCHANGE_HOST") or (
            parts.hostname if is_loopback(parts.hostname) else LOOPBACK
        )
        port = _int(env, "EXCHANGE_PORT", url_port if url_port is not None else 80)
        if not 0 <= port <= 65535:
            raise ConfigError(f"EXCHANGE_PORT={port}: out of range")
        admin_token = env.get(ADMIN_TOKEN_ENV) or None
        if admin_token is not None and (
            len(admin_token) < MIN_ADMIN_TOKEN_LENGTH or not admin_token.isprintable()
        ):
            raise ConfigError(
                f"{ADMIN_TOKEN_ENV}: at least {MIN_ADMIN_TOKEN_LENGTH} printable "
                "characters"
            )
        if admin_token is None and not is_loopback(host):
            raise ConfigError(
                f"EXCHANGE_HOST={host!r} is not a loopback address: set "
                f"{ADMIN_TOKEN_ENV}, or anyone who reaches the port can move "
                "prices and inject faults"
            )
        quotes_port = _int(env, "EXCHANGE_QUOTES_PORT", 0) or None
        if quotes_port is not None and (
            not 0 < quotes_port <= 65535 or quotes_port == port
        ):
            raise ConfigError(
                f"EXCHANGE_QUOTES_PORT={quotes_port}: 1-65535, not EXCHANGE_PORT"
            )
        fix_port = _int(env, "EXCHANGE_FIX_PORT", DEFAULT_FIX_PORT)
        if not 0 <= fix_port <= 65535 or (fix_port and fix_port in (port, quotes_port)):
            raise ConfigError(
                f"EXCHANGE_FIX_PORT={fix_port}: 0-65535, not an HTTP port"
            )
        fix_comp_id = env.get("EXCHANGE_FIX_COMP_ID") or DEFAULT_FIX_COMP_ID
        if not COMP_ID_RE.fullmatch(fix_comp_id):
            raise ConfigError(
                f"EXCHANGE_FIX_COMP_ID={fix_comp_id!r}: 1 to 64 characters from "
                "A-Z a-z 0-9 . _ -"
            )
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
            admin_token=admin_token,
            quotes_port=quotes_port,
            # The FIX port follows the HTTP interface unless told otherwise.
            fix_host=env.get("EXCHANGE_FIX_HOST") or host,
            fix_port=fix_port,
            fix_comp_id=fix_comp_id,
            fix_username=_fix_credential(env, "EXCHANGE_FIX_USERNAME"),
            fix_password=_fix_credential(env, "EXCHANGE_FIX_PASSWORD"),
        )


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); any
    other name may resolve to anything, so it is not."""
    if host is None:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fix_credential(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and (len(raw) > 128 or not raw.isprintable()):
        raise ConfigError(f"{name}: at most 128 printable characters")
    return raw


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
