"""Detached processes, pid files, and stopping with a deadline.

Services are started in their own session (``start_new_session``) with output going
to their log file, so they outlive the CLI and ignore the terminal's Ctrl-C. A pid file
holds just the pid; it only counts if that process is alive *and* its command line
still matches the service (pids get reused), otherwise it is stale and removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path


class CommandFailed(Exception):
    """A synchronous helper command exited non-zero or ran out of time."""


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie. Reaps it if it is our child."""
    try:
        # A child that exited stays a zombie until reaped, and kill(0) succeeds
        # on zombies; reaping it here makes it disappear.
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child (the usual case: started by an earlier CLI run)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user (e.g. postgres)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 (after the parenthesised command name) is the state; Z = zombie.
    return stat.rpartition(")")[2].split()[0] != "Z"


def cmdline(pid: int) -> str:
    """The process's command line with arguments joined by spaces ("" if gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def read_pid(pid_file: Path) -> int | None:
    """The first line of ``pid_file`` as an int, or None if absent or garbage."""
    try:
        first = pid_file.read_text().splitlines()[0]
        return int(first.strip())
    except (OSError, IndexError, ValueError):
        return None


def live_pid(pid_file: Path, markers: Sequence[str]) -> int | None:
    """The pid recorded in ``pid_file`` if that process is alive and its command
    line contains every marker; otherwise remove the stale file and return None."""
    pid = read_pid(pid_file)
    if pid is not None:
        # A few looks: a process rewriting its title (Redis does, right when it
        # becomes ready) briefly shows an empty or partial command line.
        for _ in range(5):
            if not is_alive(pid):
                break
            line = cmdline(pid)
            if all(marker in line for marker in markers):
                return pid
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return None


def start_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``argv`` in a new session with stdin from /dev/null and stdout+stderr
    appended to ``log_file``; write its pid to ``pid_file`` and return it. Does not
    wait for anything."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        child = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{child.pid}\n")
    return child.pid


def wait_dead(pid: int, timeout: float) -> bool:
    """Poll until ``pid`` is gone; True if it went within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def stop_pid(pid: int, *, timeout: float, sig: int = signal.SIGTERM) -> str:
    """Send ``sig`` (graceful by default) and wait up to ``timeout`` seconds; if the
    process is still there, SIGKILL its process group. Returns how it ended:
    "gone" (was not running), "stopped" or "killed"."""
    if not is_alive(pid):
        return "gone"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if wait_dead(pid, timeout):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        # Our services lead their own session, so the group holds any helpers too.
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    wait_dead(pid, 10)
    return "killed"


def run(
    argv: Sequence[str],
    *,
    log_file: Path,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a helper command to completion with output appended to ``log_file``.
    Raises ``CommandFailed`` on a non-zero exit or after ``timeout`` seconds (the
    command is killed)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            result = subprocess.run(
                list(argv),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandFailed(f"{argv[0]} timed out after {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise CommandFailed(f"{' '.join(argv[:3])} ... exited {result.returncode}")


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ("" if unreadable)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))  # enough for 20 long lines
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def port_in_use(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


@contextlib.contextmanager
def exclusive_lock(
    path: Path, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the block, so two CLI runs never
    start the same service twice. ``on_wait`` is called once if another holder makes
    us block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
