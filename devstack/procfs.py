"""What Linux's /proc says about processes: the members of a process group or a
session, and which processes listen on a TCP port. The demo uses it to reap every
process it started (gunicorn's and Celery's workers included) and to name whoever
holds a port it needs; the tests use it to prove nothing was left behind.

Every read is best effort: a process can exit between listing /proc and reading
its files, and another user's file descriptors may be unreadable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"  # the socket state column of /proc/net/tcp


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def stat(pid: int) -> ProcStat | None:
    """The process's state, parent, process group and session; None if gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is parenthesised and may hold spaces or ")".
    fields = raw.rpartition(")")[2].split()
    try:
        return ProcStat(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[3]))
    except (IndexError, ValueError):
        return None


def processes() -> Iterator[ProcStat]:
    """Every process that is alive (zombies excluded)."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            found = stat(int(entry.name))
            if found is not None and not found.zombie:
                yield found


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid``."""
    return sorted(p.pid for p in processes() if p.pgid == pgid)


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid``."""
    return sorted(p.pid for p in processes() if p.sid == sid)


def descendants(pid: int) -> list[int]:
    """Live children of ``pid``, their children, and so on."""
    children: dict[int, list[int]] = {}
    for process in processes():
        children.setdefault(process.ppid, []).append(process.pid)
    found: list[int] = []
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(children.get(child, []))
    return sorted(found)


def environ(pid: int) -> dict[str, str]:
    """The environment the process started with ({} if gone or unreadable)."""
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and int(local.rpartition(":")[2], 16) == port:
                inodes.add(inode)
    return inodes


def listening_pids(port: int) -> list[int]:
    """Processes holding a listening TCP socket on ``port`` (any address). A socket
    inherited by several processes (a pre-fork server) names them all."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    wanted = {f"socket:[{inode}]" for inode in inodes}
    holders: list[int] = []
    for process in processes():
        fd_dir = PROC / str(process.pid) / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in wanted:
                    holders.append(process.pid)
                    break
            except OSError:
                continue
    return sorted(holders)
