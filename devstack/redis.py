"""Redis from Debian's ``redis-server`` package, on its own port and directory.

Layout: ``.stack/redis/`` (working dir: RDB snapshots), log ``.stack/logs/redis.log``.
Runs with ``--daemonize no`` as our own detached process (pid file in ``run/``);
listens on 127.0.0.1:56379. The system instance the package starts on 6379 is left
alone.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import urllib.parse
from collections.abc import Sequence
from pathlib import Path

from devstack import env, process
from devstack.base import Service
from devstack.errors import StackError


def _command(*parts: str) -> bytes:
    """Encode one command in RESP (safe for any bytes in passwords)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def ping(url: str, timeout: float) -> bool:
    """Send PING to the Redis at ``url`` (``redis://`` or ``rediss://``,
    authenticating if the URL has a password) and expect ``+PONG``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
    host, port = parts.hostname or "localhost", parts.port or 6379
    sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
    if parts.scheme == "rediss":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    with sock:
        sock.settimeout(timeout)
        commands: list[tuple[str, ...]] = []
        if parts.password is not None:
            password = urllib.parse.unquote(parts.password)
            user = urllib.parse.unquote(parts.username or "")
            commands.append(("AUTH", user, password) if user else ("AUTH", password))
        commands.append(("PING",))
        sock.sendall(b"".join(_command(*command) for command in commands))
        reply = b""
        # AUTH and PING both answer with one simple line.
        while reply.count(b"\r\n") < len(commands):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    lines = reply.split(b"\r\n")
    if lines[-2:-1] != [b"+PONG"]:
        raise ConnectionError(f"unexpected reply {reply[:200]!r}")
    return True


class Redis(Service):
    name = "redis"
    env_var = env.REDIS_URL
    ready_timeout = 30.0
    # SIGTERM makes Redis write its snapshot first; give that time.
    stop_timeout = 30.0

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file(self.name)

    def local_ports(self) -> Sequence[int]:
        return (env.REDIS_PORT,)

    def running_pid(self) -> int | None:
        # Redis rewrites its process title to "redis-server 127.0.0.1:56379".
        return process.live_pid(self.pid_file, ("redis-server", str(env.REDIS_PORT)))

    def probe(self, url: str, timeout: float) -> bool:
        return ping(url, timeout)

    def launch(self) -> None:
        self.paths.ensure()
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError(
                self.name,
                "redis-server not found: run `python -m devstack install`",
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        process.start_detached(
            [
                binary,
                "--port",
                str(env.REDIS_PORT),
                "--bind",
                env.LOCAL_HOST,
                # We supervise it: no fork, so the pid we record is the server's.
                "--daemonize",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log_file),
            ],
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )
