"""Where a leader stands in its topic: the next Kafka offset per partition, stored
in PostgreSQL in the same fenced transaction as the work it covers (so work and
position never disagree)."""

from __future__ import annotations

from django.db import connection


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
