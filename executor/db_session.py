"""PostgreSQL session settings of an executor process."""

from __future__ import annotations

from django.db import connection
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
