"""The real kustomize, for rendering ``k8s/`` (the deploy tests): built once with
``go install`` into ``<stack dir>/bin/kustomize-<version>`` and reused after that.

Go's own state for the build (GOPATH, module and build caches) lives under
``<stack dir>/go``, so it needs nothing but ``go`` on PATH and the Go module proxy:
no HOME, no GOPATH of the user's. That directory (about 300 MB) is removed once the
binary is in place, and kept after a failure so that a retry resumes; the module cache
is written deletable (``-modcacherw``) for that.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from devstack import process
from devstack.errors import StackError
from devstack.paths import StackPaths

log = logging.getLogger("devstack")

# v5.8 needs a newer Go than some machines have: keep the pin.
KUSTOMIZE_VERSION = "v5.7.1"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
INSTALL_TIMEOUT = 900.0
BUILD_TIMEOUT = 120.0


def binary_path(paths: StackPaths) -> Path:
    return paths.root / "bin" / f"kustomize-{KUSTOMIZE_VERSION}"


def _go_env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "GOBIN": str(work / "bin"),
        "GOPATH": str(work / "path"),
        "GOMODCACHE": str(work / "path" / "pkg" / "mod"),
        "GOCACHE": str(work / "cache"),
        "GOFLAGS": "-modcacherw",
    }


def kustomize_binary(paths: StackPaths | None = None) -> Path:
    """The pinned kustomize, installed with ``go install`` on first use. A file lock
    keeps concurrent callers (two pytest runs) from building it twice."""
    paths = paths or StackPaths.current()
    target = binary_path(paths)
    if target.is_file():
        return target
    with process.exclusive_lock(paths.run / "kustomize-install.lock"):
        if target.is_file():  # installed by whoever held the lock
            return target
        go = shutil.which("go")
        if go is None:
            raise StackError(
                "kustomize",
                f"`go` is not on PATH: install Go (1.22 or newer) to build "
                f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}, or put a kustomize "
                f"{KUSTOMIZE_VERSION} binary at {target}",
            )
        # Built into a scratch GOBIN, then renamed: the final name only ever
        # appears complete.
        work = paths.root / "go"
        gobin = work / "bin"
        log_file = paths.log_file("kustomize-install")
        log.info(
            "kustomize: go install %s@%s -> %s (log: %s)",
            KUSTOMIZE_MODULE,
            KUSTOMIZE_VERSION,
            target,
            log_file,
        )
        try:
            process.run(
                [go, "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"],
                log_file=log_file,
                timeout=INSTALL_TIMEOUT,
                cwd=paths.root,
                env=_go_env(work),
            )
        except process.CommandFailed as exc:
            raise StackError(
                "kustomize", f"go install failed: {exc}", log_file
            ) from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(gobin / "kustomize", target)
        shutil.rmtree(work, ignore_errors=True)
    return target


def kustomize_build(path: Path | str) -> list[dict[str, Any]]:
    """The resources ``kustomize build <path>`` prints, in its order."""
    result = subprocess.run(
        [str(kustomize_binary()), "build", str(path)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise StackError("kustomize", f"build {path} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
