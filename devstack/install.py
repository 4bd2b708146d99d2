"""Installing what local services need, idempotently: Debian packages via apt-get
and the Java classpaths via Maven.

Checks are cheap (file lookups), so ``up`` runs them every time; apt-get (preceded by
``apt-get update``) and Maven only run when something is actually missing or stale.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devstack import process
from devstack.errors import StackError
from devstack.paths import MAVEN_DIR, StackPaths

log = logging.getLogger("devstack")

# Debian installs each PostgreSQL major version under /usr/lib/postgresql/<ver>/bin.
POSTGRES_LIB = Path("/usr/lib/postgresql")

APT_TIMEOUT = 1800.0
MAVEN_TIMEOUT = 900.0


def postgres_versions() -> list[int]:
    """Installed PostgreSQL server major versions, ascending."""
    return sorted(
        int(path.parent.parent.name)
        for path in POSTGRES_LIB.glob("*/bin/postgres")
        if path.parent.parent.name.isdigit()
    )


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` if present, else ``java`` from PATH, else None."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def _pgbench_present() -> bool:
    # /usr/bin/pgbench is only Debian's version-dispatching wrapper; it needs a real
    # binary from a postgresql-client-<ver> package behind it.
    return bool(shutil.which("pgbench")) and any(POSTGRES_LIB.glob("*/bin/pgbench"))


@dataclass(frozen=True)
class AptNeed:
    """Something a service needs, how to tell it is there, and which Debian
    packages provide it."""

    what: str
    present: Callable[[], bool]
    packages: tuple[str, ...]


_JAVA = AptNeed(
    "java", lambda: java_executable() is not None, ("default-jre-headless",)
)
_MAVEN = AptNeed("mvn", lambda: shutil.which("mvn") is not None, ("maven",))

#: Per service; "pgbench" is not a service but always wanted (load tests use it).
APT_NEEDS: dict[str, tuple[AptNeed, ...]] = {
    "postgres": (
        AptNeed(
            "PostgreSQL server",
            lambda: bool(postgres_versions()),
            ("postgresql", "postgresql-contrib"),
        ),
    ),
    "zookeeper": (_JAVA, _MAVEN),
    "kafka": (_JAVA, _MAVEN),
    "redis": (
        AptNeed(
            "redis-server",
            lambda: shutil.which("redis-server") is not None,
            ("redis-server",),
        ),
    ),
    "pgbench": (AptNeed("pgbench", _pgbench_present, ("postgresql-client",)),),
}

#: Services whose classpath comes from ``devstack/maven/<name>/pom.xml``.
MAVEN_SERVICES = ("zookeeper", "kafka")


def ensure_apt(names: Iterable[str], paths: StackPaths) -> bool:
    """Install the Debian packages behind whatever ``names`` (keys of
    ``APT_NEEDS``) lack. Returns True if apt-get ran. Uses sudo when not root."""
    needs = {need.what: need for name in names for need in APT_NEEDS[name]}
    missing = [need for need in needs.values() if not need.present()]
    if not missing:
        return False
    packages = sorted({pkg for need in missing for pkg in need.packages})
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise StackError(
                "install",
                f"missing {', '.join(n.what for n in missing)}; not root and no sudo: "
                f"install the Debian packages {' '.join(packages)} yourself",
            )
        prefix = ["sudo"]
    # `env` passes the variable through sudo, which otherwise resets the environment.
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    # Another apt/dpkg run (e.g. unattended upgrades) holds the lock: wait for it.
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    log_file = paths.log_file("install")
    log.info(
        "install: missing %s -> apt-get install %s (log: %s)",
        ", ".join(need.what for need in missing),
        " ".join(packages),
        log_file,
    )
    try:
        process.run([*apt, *lock, "update"], log_file=log_file, timeout=APT_TIMEOUT)
        process.run(
            [*apt, *lock, "install", "-y", "--no-install-recommends", *packages],
            log_file=log_file,
            timeout=APT_TIMEOUT,
        )
    except process.CommandFailed as exc:
        raise StackError("install", f"apt-get failed: {exc}", log_file) from exc
    still = [need.what for need in missing if not need.present()]
    if still:
        raise StackError(
            "install", f"still missing after apt-get: {', '.join(still)}", log_file
        )
    return True


def pom_path(name: str) -> Path:
    return MAVEN_DIR / name / "pom.xml"


def _pom_digest(name: str) -> str:
    return hashlib.sha256(pom_path(name).read_bytes()).hexdigest()


def _marker(name: str, paths: StackPaths) -> Path:
    return paths.lib_dir(name) / ".pom.sha256"


def jars_current(name: str, paths: StackPaths) -> bool:
    """True if ``lib/<name>`` holds the jars of the POM as it is now."""
    try:
        recorded = _marker(name, paths).read_text().strip()
    except OSError:
        return False
    has_jars = any(paths.lib_dir(name).glob("*.jar"))
    return has_jars and recorded == _pom_digest(name)


def ensure_jars(name: str, paths: StackPaths) -> bool:
    """Fetch the runtime classpath of ``name`` into ``lib/<name>`` with Maven unless
    it matches the POM already (recorded hash). Returns True if Maven ran.

    Must not run while that service is running: its jars are replaced.
    """
    if jars_current(name, paths):
        return False
    if shutil.which("mvn") is None or java_executable() is None:
        raise StackError(name, "needs java and mvn: run `python -m devstack install`")
    lib = paths.lib_dir(name)
    lib.mkdir(parents=True, exist_ok=True)
    # Old jars of other versions would end up on the same wildcard classpath.
    for jar in lib.glob("*.jar"):
        jar.unlink()
    _marker(name, paths).unlink(missing_ok=True)
    log_file = paths.log_file(f"maven-{name}")
    log.info("%s: fetching jars with Maven into %s (log: %s)", name, lib, log_file)
    argv = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom_path(name)),
        # `validate` runs the POM's own bound executions (the ZooKeeper POM copies its
        # two jars there); copy-dependencies then copies the declared runtime graph.
        "validate",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
        "-DincludeScope=runtime",
    ]
    try:
        process.run(argv, log_file=log_file, timeout=MAVEN_TIMEOUT)
    except process.CommandFailed as exc:
        raise StackError(
            name, f"Maven could not fetch the jars: {exc}", log_file
        ) from exc
    if not any(lib.glob("*.jar")):
        raise StackError(name, f"Maven ran but {lib} holds no jars", log_file)
    _marker(name, paths).write_text(_pom_digest(name) + "\n")
    return True
