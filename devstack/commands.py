"""The CLI's commands. Each returns the process exit code.

``up``, ``down`` and ``install`` hold an exclusive lock on the stack dir so that
concurrent invocations (two test sessions, say) never start a service twice.
Services are started and stopped in parallel threads: they are independent, and
the JVM start-ups dominate a cold ``up``.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

from devstack import env, install, process
from devstack.base import Service, Status
from devstack.errors import StackError
from devstack.paths import StackPaths
from devstack.services import NAMES, all_services

log = logging.getLogger("devstack")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_NOT_ALL_UP = 3

T = TypeVar("T")


def _locked(paths: StackPaths) -> AbstractContextManager[None]:
    return process.exclusive_lock(
        paths.lock_file,
        on_wait=lambda: log.info("waiting for another devstack command to finish"),
    )


def _each(
    services: Sequence[Service], action: Callable[[Service], T]
) -> list[T | StackError]:
    """Run ``action`` on every service concurrently; results in input order, with
    failures as ``StackError`` values (unexpected exceptions wrapped)."""

    def guarded(service: Service) -> T | StackError:
        try:
            return action(service)
        except StackError as exc:
            return exc
        except Exception as exc:
            log.debug("%s failed", service.name, exc_info=True)
            return StackError(
                service.name,
                f"unexpected {type(exc).__name__}: {exc}",
                service.log_file,
            )

    if not services:
        return []
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        return list(pool.map(guarded, services))


def _report(errors: Sequence[StackError]) -> None:
    for error in errors:
        print(error.report(), file=sys.stderr)


def up(record: Path | None = None) -> int:
    """Install what is missing, then bring every service up (see ``Service.up``);
    append the names of services started by this call to ``record`` as soon as each
    is ready; write the env file if everything is up."""
    began = time.monotonic()
    paths = StackPaths.current()
    paths.ensure()
    services = all_services(paths)
    record_lock = threading.Lock()

    def bring_up(service: Service) -> bool:
        started = service.up()
        if started and record is not None:
            # Appended at once, so a later failure still leaves a complete list of
            # what needs stopping.
            with record_lock, record.open("a") as handle:
                handle.write(service.name + "\n")
        return started

    if record is not None:
        # Exists even if nothing gets started, so callers can always read it.
        record.touch()
    with _locked(paths):
        local = [service.name for service in services if not service.is_external()]
        try:
            install.ensure_apt([*local, "pgbench"], paths)
        except StackError as exc:
            _report([exc])
            return EXIT_FAILED
        results = _each(services, bring_up)
        errors = [result for result in results if isinstance(result, StackError)]
        if errors:
            _report(errors)
            print(
                f"up: FAILED for {', '.join(e.service for e in errors)}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        env_path = env.write_env_file(paths.env_file)
    started = [s.name for s, r in zip(services, results, strict=True) if r is True]
    log.info(
        "up: all services ready in %.1fs (started: %s); env file: %s",
        time.monotonic() - began,
        ", ".join(started) or "none",
        env_path,
    )
    return EXIT_OK


def read_record(path: Path) -> list[str]:
    """Service names listed in a ``--record`` file (unknown names are warned about
    and skipped; a missing file means nothing was started)."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    names: list[str] = []
    for line in lines:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name not in NAMES:
            log.warning("%s: ignoring unknown service %r", path, name)
        elif name not in names:
            names.append(name)
    return names


def down(only_from: Path | None = None) -> int:
    """Stop the local services (all, or those named in ``only_from``) gracefully,
    killing after each service's deadline. Idempotent."""
    paths = StackPaths.current()
    services = all_services(paths)
    if only_from is not None:
        wanted = read_record(only_from)
        services = [service for service in services if service.name in wanted]
        if not services:
            log.info("down: nothing listed in %s", only_from)
            return EXIT_OK
    if not paths.root.exists():
        log.info("down: no stack directory at %s, nothing to stop", paths.root)
        return EXIT_OK
    with _locked(paths):
        results = _each(services, lambda service: service.down())
    errors = [result for result in results if isinstance(result, StackError)]
    _report(errors)
    return EXIT_FAILED if errors else EXIT_OK


def status() -> int:
    """Print one line per service; exit 0 only if all of them answer."""
    paths = StackPaths.current()
    services = all_services(paths)
    results = _each(services, lambda service: service.status())
    rows: list[Status] = []
    for service, result in zip(services, results, strict=True):
        if isinstance(result, StackError):
            result = Status(
                service.name,
                "unknown",
                False,
                service.address(),
                service.log_file,
                result.message,
            )
        rows.append(result)
    width = max(len(row.address) for row in rows)
    for row in rows:
        state = row.state if row.up or row.state == "stopped" else f"{row.state}!"
        line = (
            f"{row.name:<10} {state:<9} {row.address:<{width}}  {row.log_file or '-'}"
        )
        print(line + (f"  ({row.detail})" if row.detail else ""))
    return EXIT_OK if all(row.up for row in rows) else EXIT_NOT_ALL_UP


def print_env() -> int:
    """Print the env file; if ``up`` has not written one yet, print what it would
    write (computed from the environment)."""
    path = StackPaths.current().env_file
    if path.exists():
        sys.stdout.write(path.read_text())
    else:
        log.info("no %s yet (run up); computed from the environment:", path)
        sys.stdout.write(env.render(env.local_env()))
    return EXIT_OK


def install_all() -> int:
    """Install every Debian package and classpath the stack can use. Classpaths of
    running services are not replaced (their jars are in use)."""
    paths = StackPaths.current()
    paths.ensure()
    services = {service.name: service for service in all_services(paths)}
    with _locked(paths):
        try:
            ran_apt = install.ensure_apt([*NAMES, "pgbench"], paths)
            fetched = []
            for name in install.MAVEN_SERVICES:
                if services[name].running_pid() is not None:
                    if not install.jars_current(name, paths):
                        log.warning(
                            "%s: running with an outdated classpath; run down, then "
                            "install (or up)",
                            name,
                        )
                    continue
                if install.ensure_jars(name, paths):
                    fetched.append(name)
        except StackError as exc:
            _report([exc])
            return EXIT_FAILED
    log.info(
        "install: %s; jars %s",
        "apt packages installed" if ran_apt else "apt packages already present",
        f"fetched for {', '.join(fetched)}" if fetched else "up to date",
    )
    return EXIT_OK
