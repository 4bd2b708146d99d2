"""PostgreSQL session settings of an executor process."""

from __future__ import annotations

import time

from django.db import close_old_connections, connection
from django.db.backends.signals import connection_created


def bound_idle_transactions(seconds: float) -> None:
    """Have PostgreSQL end any transaction of this process that sits idle longer
    than ``seconds``: the locks of a leader frozen mid-transaction are released
    and its transaction can never commit once it wakes (its connection is gone;
    the next statement fails and the work is retried under the fence)."""
    milliseconds = str(max(1, round(seconds * 1000)))

    def apply(sender, connection, **kwargs) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                [milliseconds],
            )

    connection_created.connect(apply, weak=False, dispatch_uid="executor-idle-tx")
    # A connection opened before (system checks) would miss the setting.
    connection.close()


class ConnectionRefresher:
    """``close_old_connections()`` (drop this thread's connection when it is past
    its age or broken, and re-arm the health check) at most once per ``every``
    seconds: per message it would cost a health-check round trip each time. A
    connection that breaks in between surfaces as OperationalError, which the
    callers handle by refreshing at once."""

    def __init__(self, every: float = 1.0) -> None:
        self._every = every
        self._at = float("-inf")

    def maybe(self) -> None:
        now = time.monotonic()
        if now - self._at >= self._every:
            self._at = now
            close_old_connections()
