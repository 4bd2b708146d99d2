"""Shared launch logic of the JVM services (ZooKeeper, Kafka): classpath from
``.stack/lib/<service>/``, detached ``java`` process with a pid file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from devstack import install, process
from devstack.base import Service
from devstack.errors import StackError

COMMON_JVM_FLAGS = (
    "-Djava.awt.headless=true",
    # A broken JVM should die (and be restarted by `up`), not limp on.
    "-XX:+ExitOnOutOfMemoryError",
)


class JavaService(Service):
    """A service run as ``java <flags> -cp 'lib/<name>/*' <main> <args>``."""

    #: Fully qualified main class.
    main_class: ClassVar[str]
    #: Heap and GC flags for this service.
    jvm_flags: ClassVar[Sequence[str]] = ()

    @property
    def classpath(self) -> str:
        # Literal `*`: the JVM itself expands it to every jar in the directory.
        return str(self.paths.lib_dir(self.name) / "*")

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file(self.name)

    def pid_markers(self) -> Sequence[str]:
        """Strings that must appear in the process's command line for a pid file to
        be believed (the main class and this stack's config file)."""
        return (self.main_class,)

    def running_pid(self) -> int | None:
        return process.live_pid(self.pid_file, self.pid_markers())

    def java_argv(
        self, main_class: str, args: Sequence[str | Path], extra: Sequence[str] = ()
    ) -> list[str]:
        """The full java command line for ``main_class`` on this classpath."""
        java = install.java_executable()
        if java is None:
            raise StackError(
                self.name, "java not found: run `python -m devstack install`"
            )
        return [
            java,
            *COMMON_JVM_FLAGS,
            *extra,
            "-cp",
            self.classpath,
            main_class,
            *(str(arg) for arg in args),
        ]

    def prepare_jars(self) -> None:
        """Fetch the classpath if it is missing or stale (see ``install``)."""
        install.ensure_jars(self.name, self.paths)

    def spawn(self, args: Sequence[str | Path], extra: Sequence[str] = ()) -> int:
        """Start the server detached, cwd in its own directory (so JVM crash files
        land there), output appended to its log."""
        return process.start_detached(
            self.java_argv(self.main_class, args, [*self.jvm_flags, *extra]),
            log_file=self.log_file,
            pid_file=self.pid_file,
            cwd=self.dir,
        )
