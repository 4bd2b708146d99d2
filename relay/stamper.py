"""Stamping published outbox rows on a connection and thread of their own, so the
UPDATE runs in PostgreSQL while the relay loop reads and produces the next batch
(in series they were half of the relay's wall time)."""

from __future__ import annotations

import logging
import queue
import threading

from relay.db import array_literal, raw_connect

logger = logging.getLogger(__name__)

# Not the relay's own application_name: relays count each other by it.
APPLICATION_NAME = "broker-relay-stamper"
CLOSE_SECONDS = 30.0
_STAMP = (
    "UPDATE broker_outboxevent SET published_at = now() WHERE id = ANY(%s::bigint[])"
)


class Stamper:
    """Stamps batches of ids in the order submitted. A failure (PostgreSQL gone,
    or anything else) is raised to the relay loop at its next submit or wait; the
    rows it did not stamp are published again, which at-least-once delivery
    allows."""

    def __init__(self, depth: int) -> None:
        self._queue: queue.Queue[list[int] | None] = queue.Queue(maxsize=depth)
        self._error: Exception | None = None
        self._conn = raw_connect(application_name=APPLICATION_NAME)
        # A stamp lost to a PostgreSQL crash only means that row is published
        # again; so the stamps need not wait for the WAL flush (a third of their
        # cost).
        self._conn.execute("SET synchronous_commit = off")
        # By primary key whatever the (stale, in a burst) statistics say.
        self._conn.execute("SET enable_seqscan = off")
        self._thread = threading.Thread(
            target=self._run, name="outbox-stamper", daemon=True
        )
        self._thread.start()

    def submit(self, ids: list[int]) -> None:
        self._raise_failure()
        self._queue.put(ids)

    def wait(self) -> None:
        """Block until every submitted stamp is committed."""
        self._queue.join()
        self._raise_failure()

    def close(self) -> None:
        """Stop the thread after the stamps already submitted (bounded: a thread
        stuck on a dead connection is abandoned, it is a daemon)."""
        try:
            self._queue.put(None, timeout=CLOSE_SECONDS)
            self._thread.join(CLOSE_SECONDS)
        except queue.Full:
            logger.warning("outbox stamper did not stop; abandoned")
        self._conn.close()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            ids = self._queue.get()
            try:
                if ids is None:
                    return
                if self._error is None:
                    self._conn.execute(_STAMP, [array_literal(ids)])
            except Exception as exc:
                # Kept for the relay loop to raise: a stamper thread that died
                # instead would leave wait() blocked for ever.
                logger.warning("outbox stamp failed: %s", exc)
                self._error = exc
            finally:
                self._queue.task_done()
