"""What every stack service provides, and the up/down/status flow they share.

A concrete service (``postgres.py``, ``zookeeper.py``, ...) says how to probe it with
a real client, how to find its running process, how to launch it and how to stop it;
this module decides *when* to do which, so every service behaves the same way:

* external (its variable points elsewhere): never started or stopped, only probed;
* local and answering: left alone;
* local, process alive but not answering: waited for (it may still be starting);
* local and not running: ports checked, launched, waited for with a deadline, and
  stopped again if it never became ready (so a retry starts clean).
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from devstack import env, process
from devstack.errors import StackError
from devstack.paths import StackPaths
from devstack.wait import ProcessExited, WaitTimeout, wait_until

log = logging.getLogger("devstack")


@dataclass(frozen=True)
class Status:
    """One line of ``status``. ``state`` is "running", "stopped" or "external";
    ``up`` says whether the service answered a real client call just now."""

    name: str
    state: str
    up: bool
    address: str
    log_file: Path | None
    detail: str = ""


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for printing)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.password:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{host}"))


class Service(ABC):
    """A piece of infrastructure the stack runs locally or checks externally."""

    #: Short name used for logs, pid files, ``--record`` files and the CLI.
    name: ClassVar[str]
    #: Environment variable holding the address (see ``devstack.env``).
    env_var: ClassVar[str]
    #: Seconds a local start may take until the service answers.
    ready_timeout: ClassVar[float] = 60.0
    #: Seconds a graceful stop may take before SIGKILL.
    stop_timeout: ClassVar[float] = 30.0
    #: Seconds an external deployment gets to answer during ``up``.
    external_timeout: ClassVar[float] = 20.0
    #: Bound for one probe (one real client call).
    probe_timeout: ClassVar[float] = 2.0

    def __init__(self, paths: StackPaths) -> None:
        self.paths = paths

    # ----------------------------------------------------------------- addresses
    @property
    def log_file(self) -> Path:
        return self.paths.log_file(self.name)

    @property
    def dir(self) -> Path:
        """This service's data/config directory in the stack dir."""
        return self.paths.service_dir(self.name)

    def local_url(self) -> str:
        return env.LOCAL_DEFAULTS[self.env_var]

    def url(self) -> str:
        """The address in force (external value or the local default)."""
        return env.local_env()[self.env_var]

    def is_external(self) -> bool:
        return env.is_external(self.env_var)

    def address(self) -> str:
        return mask_password(self.url())

    # ------------------------------------------------------ service specifics
    @abstractmethod
    def probe(self, url: str, timeout: float) -> object:
        """Make one real client call to ``url`` bounded by ``timeout`` seconds.
        Return a truthy value if the service answered properly; raise or return a
        falsy value otherwise."""

    @abstractmethod
    def running_pid(self) -> int | None:
        """The pid of this stack's local process if alive, else None (cleaning a
        stale pid file)."""

    @abstractmethod
    def local_ports(self) -> Sequence[int]:
        """The 127.0.0.1 ports the local process listens on."""

    @abstractmethod
    def launch(self) -> None:
        """Prepare everything the local process needs (jars, configs, first-time
        initialisation) and start it detached. Need not wait for readiness."""

    def terminate(self, pid: int) -> str:
        """Stop the local process gracefully, SIGKILL after ``stop_timeout``.
        Returns "stopped", "killed" or "gone"."""
        return process.stop_pid(pid, timeout=self.stop_timeout)

    def wait_ready(self, timeout: float) -> None:
        """Block until the freshly started local process answers; raise
        ``WaitTimeout`` / ``ProcessExited`` otherwise. Services with post-start
        steps (creating roles, ...) extend this."""
        wait_until(
            lambda: self.probe(self.local_url(), self.probe_timeout),
            timeout=timeout,
            what=f"{self.name} to answer at {self.local_url()}",
            interval=0.25,
            alive=lambda: self.running_pid() is not None,
            retry_on=(Exception,),
        )

    # ----------------------------------------------------------- shared flow
    def answers(self, url: str) -> bool:
        """True if one probe of ``url`` succeeds."""
        try:
            return bool(self.probe(url, self.probe_timeout))
        except Exception:  # any client failure means "does not answer"
            return False

    def up(self) -> bool:
        """Make the service answer (see module docstring). Returns True only if
        this call started a process. Raises ``StackError`` on failure."""
        began = time.monotonic()
        if self.is_external():
            self._check_external()
            log.info("%s: external, reachable at %s", self.name, self.address())
            return False
        pid = self.running_pid()
        if pid is not None:
            if self.answers(self.local_url()):
                log.info(
                    "%s: already running (pid %d) at %s", self.name, pid, self.address()
                )
                return False
            log.info("%s: running (pid %d) but not answering; waiting", self.name, pid)
            self._wait_ready(stop_on_failure=False)
            log.info("%s: ready after %.1fs", self.name, time.monotonic() - began)
            return False
        busy = [
            port
            for port in self.local_ports()
            if process.port_in_use(env.LOCAL_HOST, port)
        ]
        if busy:
            ports = ", ".join(f"{env.LOCAL_HOST}:{port}" for port in busy)
            raise StackError(
                self.name,
                f"{ports} in use by a process this stack did not start (no live pid "
                f"file under {self.paths.run}); stop that process or free the port",
                self.log_file,
            )
        log.info("%s: starting (log: %s)", self.name, self.log_file)
        try:
            self.launch()
        except (process.CommandFailed, OSError) as exc:
            raise StackError(
                self.name, f"failed to start: {exc}", self.log_file
            ) from exc
        self._wait_ready(stop_on_failure=True)
        log.info(
            "%s: started, ready at %s in %.1fs",
            self.name,
            self.address(),
            time.monotonic() - began,
        )
        return True

    def down(self) -> str:
        """Stop the local process if there is one (external settings are ignored:
        whatever this stack dir runs is stopped). Returns "stopped", "killed" or
        "not running"."""
        pid = self.running_pid()
        if pid is None:
            log.info("%s: not running", self.name)
            return "not running"
        began = time.monotonic()
        how = self.terminate(pid)
        if how == "killed":
            log.warning(
                "%s: did not stop within %.0fs, killed (pid %d)",
                self.name,
                self.stop_timeout,
                pid,
            )
        else:
            log.info(
                "%s: stopped (pid %d) in %.1fs",
                self.name,
                pid,
                time.monotonic() - began,
            )
        return how

    def status(self) -> Status:
        """Probe without changing anything."""
        if self.is_external():
            up = self.answers(self.url())
            return Status(
                self.name,
                "external",
                up,
                self.address(),
                None,
                "" if up else "unreachable",
            )
        pid = self.running_pid()
        if pid is None:
            return Status(self.name, "stopped", False, self.address(), self.log_file)
        up = self.answers(self.local_url())
        detail = f"pid {pid}" + ("" if up else ", not answering")
        return Status(self.name, "running", up, self.address(), self.log_file, detail)

    # --------------------------------------------------------------- helpers
    def _wait_ready(self, *, stop_on_failure: bool) -> None:
        try:
            self.wait_ready(self.ready_timeout)
        except (WaitTimeout, ProcessExited) as exc:
            message = f"did not become ready: {exc}"
            pid = self.running_pid()
            if stop_on_failure and pid is not None:
                self.terminate(pid)
                message += "; the process was stopped again"
            elif pid is not None:
                message += (
                    f"; it is still running (pid {pid}): "
                    f"`python -m devstack down` stops it"
                )
            raise StackError(self.name, message, self.log_file) from exc

    def _check_external(self) -> None:
        try:
            wait_until(
                lambda: self.probe(self.url(), self.probe_timeout),
                timeout=self.external_timeout,
                what=f"{self.name} at {self.address()}",
                interval=1.0,
                retry_on=(Exception,),
            )
        except WaitTimeout as exc:
            raise StackError(
                self.name,
                f"external deployment {self.env_var}={self.address()} is "
                f"unreachable: {exc}",
            ) from exc
