"""PostgreSQL from Debian's packages, with its own data directory in the stack dir.

Layout: data directory ``.stack/postgres`` (our settings in ``broker_stack.conf``
inside it, rewritten on every start), Unix socket in ``.stack/run/postgres-socket``,
server log ``.stack/logs/postgres.log``. Listens on 127.0.0.1:55432 only.

initdb and the server refuse to run as root, so as root everything PostgreSQL does
runs as the ``postgres`` system user (created by the Debian package) via ``runuser``
and the directories it writes are chowned to it (and the stack dir's ancestors get
the search bit for others, so that user can reach it); otherwise it runs as the current
user. The superuser is always called ``postgres`` and may log in over the (private)
Unix socket without a password; the application role ``broker`` (CREATEDB, because
pytest-django creates test databases) uses a password over TCP.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg import sql

from devstack import env, install, process
from devstack.base import Service
from devstack.errors import StackError
from devstack.wait import wait_until

log = logging.getLogger("devstack")

SUPERUSER = "postgres"
# The Debian package creates this system user; root hands PostgreSQL over to it.
OS_USER = "postgres"
CONF_NAME = "broker_stack.conf"


def _as_root() -> bool:
    return os.geteuid() == 0


def _as_db_user(argv: Sequence[str | Path]) -> list[str]:
    """``argv`` run as the user that owns the cluster (see module docstring)."""
    args = [str(arg) for arg in argv]
    return ["runuser", "-u", OS_USER, "--", *args] if _as_root() else args


def _hand_over(path: Path) -> None:
    """Make ``path`` owned by the cluster's user (only needed when root)."""
    if _as_root():
        shutil.chown(path, OS_USER, OS_USER)


def _allow_traverse(directory: Path) -> None:
    """Let the cluster's user pass through ``directory`` (as root, the stack dirs
    are root's; a restrictive umask would lock the postgres user out)."""
    if _as_root():
        directory.chmod(directory.stat().st_mode | 0o011)


def _allow_traverse_to(directory: Path, within: Path = Path("/")) -> None:
    """As root, let the cluster's user reach ``directory``: every ancestor (inside
    ``within``) that others may not pass through (a checkout under ``mktemp -d``,
    mode 0700, say) gets the search bit only, never read."""
    if not _as_root():
        return
    for ancestor in reversed(directory.parents):
        if not ancestor.is_relative_to(within):
            continue
        mode = ancestor.stat().st_mode
        if not mode & 0o001:
            log.info("postgres: letting the postgres user pass through %s", ancestor)
            ancestor.chmod(mode | 0o001)


class Postgres(Service):
    name = "postgres"
    env_var = env.DATABASE_URL
    ready_timeout = 60.0
    stop_timeout = 60.0

    @property
    def data(self) -> Path:
        return self.dir

    @property
    def socket_dir(self) -> Path:
        return self.paths.run / "postgres-socket"

    def local_ports(self) -> Sequence[int]:
        return (env.POSTGRES_PORT,)

    def bin_dir(self) -> Path:
        """The binaries matching the data directory's version if it exists, else
        the highest installed version's."""
        versions = install.postgres_versions()
        version_file = self.data / "PG_VERSION"
        if version_file.exists():
            wanted = int(version_file.read_text().strip())
            if wanted not in versions:
                raise StackError(
                    self.name,
                    f"{self.data} was created by PostgreSQL {wanted}, which is not "
                    f"installed (installed: {versions or 'none'}); install "
                    f"postgresql-{wanted} or delete {self.data}",
                    self.log_file,
                )
            return install.POSTGRES_LIB / str(wanted) / "bin"
        if not versions:
            raise StackError(
                self.name,
                "PostgreSQL is not installed: run `python -m devstack install`",
            )
        return install.POSTGRES_LIB / str(versions[-1]) / "bin"

    def running_pid(self) -> int | None:
        # postmaster.pid is PostgreSQL's own lock file: read it, but leave a stale
        # one for the server to clean (it checks and replaces it on start).
        pid = process.read_pid(self.data / "postmaster.pid")
        if pid is None or not process.is_alive(pid):
            return None
        return pid if str(self.data) in process.cmdline(pid) else None

    def probe(self, url: str, timeout: float) -> bool:
        # libpq's connect_timeout is whole seconds, at least 2.
        with psycopg.connect(
            url, connect_timeout=max(2, math.ceil(timeout)), autocommit=True
        ) as conn:
            row = conn.execute("select 1").fetchone()
        return row == (1,)

    # ------------------------------------------------------------------ start
    def launch(self) -> None:
        self.paths.ensure()
        bin_dir = self.bin_dir()
        _allow_traverse_to(self.paths.root)
        for directory in (self.paths.root, self.paths.logs, self.paths.run):
            _allow_traverse(directory)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        _hand_over(self.socket_dir)
        self.log_file.touch()
        _hand_over(self.log_file)
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bin_dir)
        self._write_settings()
        log.info("%s: pg_ctl start (%s)", self.name, bin_dir)
        process.run(
            _as_db_user(
                [
                    bin_dir / "pg_ctl",
                    "start",
                    "-D",
                    self.data,
                    "-l",
                    self.log_file,
                    # pg_ctl's own wait notices a postmaster that dies at once;
                    # readiness proper is checked afterwards with real clients.
                    "-w",
                    "-t",
                    str(int(self.ready_timeout)),
                ]
            ),
            log_file=self.log_file,
            timeout=self.ready_timeout + 10,
            cwd=self.paths.root,
        )

    def _initdb(self, bin_dir: Path) -> None:
        if self.data.exists():
            # No PG_VERSION: left over from an interrupted initdb, which needs an
            # empty directory.
            shutil.rmtree(self.data)
        self.data.mkdir(mode=0o700)
        _hand_over(self.data)
        log.info("%s: first start: initdb %s", self.name, self.data)
        process.run(
            _as_db_user(
                [
                    bin_dir / "initdb",
                    "-D",
                    self.data,
                    "-U",
                    SUPERUSER,
                    "-E",
                    "UTF8",
                    "--no-locale",
                    # Local socket: only this user (socket dir is 0700). TCP: passwords.
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-instructions",
                ]
            ),
            log_file=self.log_file,
            timeout=120,
            cwd=self.paths.root,
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# Added by devstack (its file is rewritten on every start).\n"
                f"include = '{CONF_NAME}'\n"
            )

    def _write_settings(self) -> None:
        settings = {
            "listen_addresses": f"'{env.LOCAL_HOST}'",
            "port": str(env.POSTGRES_PORT),
            # Executors, relays, API workers and tests each hold pools.
            "max_connections": "300",
            # Not /var/run/postgresql: that belongs to the system cluster.
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            # Durability stays real: the project tests crash-safety.
            "fsync": "on",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }
        conf = self.data / CONF_NAME
        conf.write_text(
            "# Written by devstack on every start; edit devstack/postgres.py.\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        _hand_over(conf)

    # -------------------------------------------------------------- readiness
    def _superuser(self) -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.socket_dir),
            port=env.POSTGRES_PORT,
            user=SUPERUSER,
            dbname="postgres",
            connect_timeout=2,
            autocommit=True,
        )

    def wait_ready(self, timeout: float) -> None:
        """Wait for the socket, create/refresh the role and database, then wait for
        ``DATABASE_URL`` to answer ``select 1``."""
        deadline = time.monotonic() + timeout

        def alive() -> bool:
            return self.running_pid() is not None

        def superuser_ok() -> bool:
            with self._superuser() as conn:
                return conn.execute("select 1").fetchone() == (1,)

        wait_until(
            superuser_ok,
            timeout=timeout,
            what=f"{self.name} to accept connections on {self.socket_dir}",
            interval=0.25,
            alive=alive,
            retry_on=(Exception,),
        )
        self._bootstrap()
        wait_until(
            lambda: self.probe(self.local_url(), self.probe_timeout),
            timeout=max(1.0, deadline - time.monotonic()),
            what=f"{self.name} to answer at {self.address()}",
            interval=0.25,
            alive=alive,
            retry_on=(Exception,),
        )

    def _bootstrap(self) -> None:
        """Idempotently give the application its role and database (the password
        and attributes are re-applied, so a hand-edited role is repaired)."""
        role, password, db = env.POSTGRES_USER, env.POSTGRES_PASSWORD, env.POSTGRES_DB
        with self._superuser() as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone()
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                    sql.SQL("ALTER" if exists else "CREATE"),
                    sql.Identifier(role),
                    sql.Literal(password),
                )
            )
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (db,)
            ).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(role)
                    )
                )
                log.info("%s: created role %s and database %s", self.name, role, db)

    # ------------------------------------------------------------------- stop
    def terminate(self, pid: int) -> str:
        """``pg_ctl stop -m fast`` (disconnect clients, checkpoint, exit) with a
        deadline; SIGQUIT (immediate) then SIGKILL if that fails."""
        with contextlib.suppress(StackError):
            bin_dir = self.bin_dir()
            try:
                process.run(
                    _as_db_user(
                        [
                            bin_dir / "pg_ctl",
                            "stop",
                            "-D",
                            self.data,
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            str(int(self.stop_timeout)),
                        ]
                    ),
                    log_file=self.log_file,
                    timeout=self.stop_timeout + 10,
                    cwd=self.paths.root,
                )
            except process.CommandFailed as exc:
                log.warning("%s: pg_ctl stop failed (%s); signalling", self.name, exc)
            else:
                if process.wait_dead(pid, 10):
                    return "stopped"
        how = process.stop_pid(pid, timeout=10, sig=signal.SIGQUIT)
        return "killed" if how == "killed" else "stopped"
