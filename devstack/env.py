"""The addresses of the infrastructure, as environment variables.

This is the module other code imports (it starts nothing and needs no client
libraries)::

    from devstack.env import local_env, stack_dir
    os.environ.update(local_env())

Each service is either *local* (started by ``python -m devstack up`` on the fixed
127.0.0.1 ports below) or *external*: its variable is set in the environment to some
other deployment, which the stack then only checks. ``up`` writes the mapping in force
to ``<stack dir>/env`` as ``export`` lines.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from devstack.paths import stack_dir

__all__ = [
    "EXCHANGE_URL",
    "LOCAL_DEFAULTS",
    "SERVICE_VARS",
    "env_file",
    "is_external",
    "local_env",
    "render",
    "stack_dir",
    "write_env_file",
]

LOCAL_HOST = "127.0.0.1"
# Uncommon ports so the stack never collides with system instances (5432, 2181,
# 9092, 6379) that packages like redis-server start on their own.
POSTGRES_PORT = 55432
ZOOKEEPER_PORT = 52181
KAFKA_PORT = 59092
KAFKA_CONTROLLER_PORT = 59093
REDIS_PORT = 56379

POSTGRES_USER = "broker"
POSTGRES_PASSWORD = "broker"
POSTGRES_DB = "broker"

DATABASE_URL = "DATABASE_URL"
ZOOKEEPER_HOSTS = "ZOOKEEPER_HOSTS"
KAFKA_BOOTSTRAP_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_URL = "REDIS_URL"
EXCHANGE_URL = "EXCHANGE_URL"

#: Variable -> value when the service is local. Order is the env file's order.
LOCAL_DEFAULTS: Mapping[str, str] = {
    DATABASE_URL: (
        f"postgres://{POSTGRES_USER}:{POSTGRES_PASSWORD}"
        f"@{LOCAL_HOST}:{POSTGRES_PORT}/{POSTGRES_DB}"
    ),
    ZOOKEEPER_HOSTS: f"{LOCAL_HOST}:{ZOOKEEPER_PORT}",
    KAFKA_BOOTSTRAP_SERVERS: f"{LOCAL_HOST}:{KAFKA_PORT}",
    REDIS_URL: f"redis://{LOCAL_HOST}:{REDIS_PORT}/0",
    # Not a stack service: the exchange simulator is started by other code; the
    # variable is carried along so one env file configures everything.
    EXCHANGE_URL: f"http://{LOCAL_HOST}:8100",
}

#: The variables that select a service managed (or checked) by the stack.
SERVICE_VARS = (DATABASE_URL, ZOOKEEPER_HOSTS, KAFKA_BOOTSTRAP_SERVERS, REDIS_URL)


def is_external(var: str, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``var`` points at a deployment the stack must not start.

    A value equal to the local default still means local: a shell that sourced
    ``.stack/env`` must not turn the local services into "external" ones.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(var)
    return bool(value) and value != LOCAL_DEFAULTS[var]


def local_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The addresses in force, without starting or contacting anything: each
    variable's value from the environment if set (an external deployment), else
    the local stack's default. Same keys, order and values as the env file that
    ``up`` writes from the same environment."""
    environ = os.environ if environ is None else environ
    return {var: environ.get(var) or default for var, default in LOCAL_DEFAULTS.items()}


def render(mapping: Mapping[str, str]) -> str:
    """Shell ``export`` lines for ``mapping`` (values quoted only when needed)."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in mapping.items())


def env_file() -> Path:
    """Path of the env file in the current stack directory."""
    return stack_dir() / "env"


def write_env_file(path: Path | None = None) -> Path:
    """Write ``render(local_env())`` atomically to ``path`` (default: ``env_file()``)
    and return the path."""
    path = env_file() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render(local_env()))
    tmp.replace(path)
    return path
