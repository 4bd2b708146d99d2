"""Fencing of topic leaders in PostgreSQL. ZooKeeper elects; this table decides whose
writes count. An epoch only grows (the czxid of the leader's election node), so a
paused or partitioned old leader that wakes up finds a higher epoch and is refused.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from broker.errors import Fenced


def topic_leader_claim(*, topic: str, epoch: int, holder: str) -> bool:
    """Record ``holder`` as leader of ``topic`` if ``epoch`` is higher than the
    stored one (conditional upsert). Returns whether the claim won; a lower or equal
    epoch never overwrites."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO broker_topicleader (topic, epoch, holder, elected_at)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (topic) DO UPDATE
               SET epoch = EXCLUDED.epoch,
                   holder = EXCLUDED.holder,
                   elected_at = EXCLUDED.elected_at
             WHERE broker_topicleader.epoch < EXCLUDED.epoch
            RETURNING epoch
            """,
            [topic, epoch, holder, timezone.now()],
        )
        return cursor.fetchone() is not None


def fence_check(*, topic: str, epoch: int) -> None:
    """Raise Fenced unless ``epoch`` is the stored epoch of ``topic``.

    Must run inside the transaction it protects: the row is read FOR SHARE, so a new
    leader's claim waits until this transaction ends, and a transaction that passed
    the check commits before any successor starts work.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT epoch FROM broker_topicleader WHERE topic = %s FOR SHARE", [topic]
        )
        row = cursor.fetchone()
    if row is None or row[0] != epoch:
        stored = None if row is None else row[0]
        raise Fenced(f"{topic}: epoch {epoch} is not the leader's ({stored})")


def consumer_offset_advance(*, topic: str, partition: int, next_offset: int) -> None:
    """Store the next offset to read. Must run inside the fenced transaction of the
    work that consumed the message; never moves backwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO broker_consumeroffset
                   (topic, partition, next_offset, updated_at)
            VALUES (%s, %s, %s, now())
            ON CONFLICT (topic, partition) DO UPDATE
               SET next_offset = EXCLUDED.next_offset, updated_at = now()
             WHERE broker_consumeroffset.next_offset < EXCLUDED.next_offset
            """,
            [topic, partition, next_offset],
        )


def consumer_offsets(*, topic: str) -> dict[int, int]:
    """partition → next offset to read, for the partitions that have one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partition, next_offset FROM broker_consumeroffset WHERE topic = %s",
            [topic],
        )
        return dict(cursor.fetchall())


def feed_cursor(*, session: str) -> int:
    """Last execution-report sequence applied for an exchange session (0 if none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT last_seq FROM broker_feedcursor WHERE session = %s", [session]
        )
        row = cursor.fetchone()
    return row[0] if row else 0


def feed_cursor_advance(*, session: str, last_seq: int) -> None:
    """Store the feed position. Must run inside the fenced transaction that applied
    the reports up to ``last_seq``; never moves backwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO broker_feedcursor (session, last_seq, updated_at)
            VALUES (%s, %s, now())
            ON CONFLICT (session) DO UPDATE
               SET last_seq = EXCLUDED.last_seq, updated_at = now()
             WHERE broker_feedcursor.last_seq < EXCLUDED.last_seq
            """,
            [session, last_seq],
        )
