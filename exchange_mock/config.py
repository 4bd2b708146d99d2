"""Configuration from environment variables, with safe local defaults.

- ``EXCHANGE_URL`` (``http://127.0.0.1:8100``): host and port to bind.
- ``EXCHANGE_HOST`` / ``EXCHANGE_PORT``: override the host / port of the URL.
- ``EXCHANGE_SEED`` (42): seed of the quote random walk.
- ``EXCHANGE_TICK_SECONDS`` (0.5): period of one quote step; 0 freezes quotes.
- ``EXCHANGE_STORE`` (``:memory:``): SQLite file of orders and executions.
- ``LOG_LEVEL`` (INFO).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

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
