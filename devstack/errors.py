"""The one error type the CLI reports: which service failed, why, and where to look."""

from __future__ import annotations

from pathlib import Path

from devstack.process import tail

TAIL_LINES = 20


class StackError(Exception):
    """A service could not be installed, started, reached or stopped.

    ``report()`` is what the user sees: the service name, the reason, the log file
    path and the last lines of that log.
    """

    def __init__(self, service: str, message: str, log_file: Path | None = None):
        super().__init__(f"{service}: {message}")
        self.service = service
        self.message = message
        self.log_file = log_file

    def report(self) -> str:
        lines = [f"{self.service}: {self.message}"]
        if self.log_file is not None:
            lines.append(f"{self.service}: log file: {self.log_file}")
            last = tail(self.log_file, TAIL_LINES)
            if last:
                lines.append(f"--- last {TAIL_LINES} lines of {self.log_file} ---")
                lines.append(last)
                lines.append("---")
        return "\n".join(lines)
