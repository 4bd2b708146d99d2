"""Where the stack keeps its state.

Everything lives under one git-ignored directory (``<repo>/.stack`` unless the
``STACK_DIR`` environment variable names another): per-service data and config
directories, ``logs/<service>.log``, pid files in ``run/``, jars in ``lib/<service>/``
and the generated ``env`` file. Deleting that directory resets the stack (after
``down``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# devstack/paths.py -> the repository root (the package is installed editable).
REPO_ROOT = Path(__file__).resolve().parents[1]

# The Maven POMs that define the Java classpaths ship with the code, not the state.
MAVEN_DIR = Path(__file__).resolve().parent / "maven"


def stack_dir() -> Path:
    """Return the absolute stack directory: ``$STACK_DIR`` if set, else
    ``<repo>/.stack``. Nothing is created."""
    override = os.environ.get("STACK_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return REPO_ROOT / ".stack"


@dataclass(frozen=True)
class StackPaths:
    """The layout of one stack directory. Pure path arithmetic; ``ensure`` creates
    the shared sub-directories."""

    root: Path

    @classmethod
    def current(cls) -> StackPaths:
        return cls(stack_dir())

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def lib(self) -> Path:
        return self.root / "lib"

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def lock_file(self) -> Path:
        return self.run / "stack.lock"

    def log_file(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def pid_file(self, service: str) -> Path:
        return self.run / f"{service}.pid"

    def lib_dir(self, service: str) -> Path:
        return self.lib / service

    def service_dir(self, service: str) -> Path:
        """Data and configuration of one service, e.g. ``.stack/kafka``."""
        return self.root / service

    def ensure(self) -> None:
        """Create the root and the shared sub-directories (idempotent)."""
        for directory in (self.root, self.logs, self.run, self.lib):
            directory.mkdir(parents=True, exist_ok=True)
