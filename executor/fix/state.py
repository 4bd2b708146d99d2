"""The FIX session's state in PostgreSQL: sequence numbers and the journal of sent
application messages (docs/FIX.md, "State"). Every function here must run inside
the leader's fenced transaction (``fence.transaction()``): a deposed leader can
neither take a sequence number nor journal nor move the expected number."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection

from broker.models import FixJournal, FixSession


@dataclass(frozen=True)
class SessionState:
    sender_comp_id: str
    next_out_seq: int
    next_in_seq: int
    reset_requested: bool


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    msg_type: str
    body: str
    sending_time: str
    trade_id: uuid.UUID | None = None


def session_state(*, sender_comp_id: str, topic: str) -> SessionState:
    """The session's numbers, creating the session at 1/1 on first use."""
    session, _ = FixSession.objects.get_or_create(
        sender_comp_id=sender_comp_id, defaults={"topic": topic}
    )
    return SessionState(
        sender_comp_id=session.sender_comp_id,
        next_out_seq=session.next_out_seq,
        next_in_seq=session.next_in_seq,
        reset_requested=session.reset_requested,
    )


def seq_allocate(*, sender_comp_id: str, count: int = 1) -> int:
    """Take ``count`` consecutive outgoing sequence numbers; returns the first."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE broker_fixsession SET next_out_seq = next_out_seq + %s, "
            "updated_at = now() WHERE sender_comp_id = %s "
            "RETURNING next_out_seq - %s",
            [count, sender_comp_id, count],
        )
        row = cursor.fetchone()
    if row is None:
        raise LookupError(f"no FIX session {sender_comp_id}")
    return row[0]


def session_reset(*, sender_comp_id: str) -> None:
    """The logon after an operator's reset: both sides restart at 1 (the Logon
    itself takes outgoing number 1) and the request is used up."""
    FixSession.objects.filter(sender_comp_id=sender_comp_id).update(
        next_out_seq=2, next_in_seq=1, reset_requested=False
    )


def next_in_advance(*, sender_comp_id: str, next_in_seq: int) -> None:
    """Store the next expected incoming number; never moves backwards."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE broker_fixsession SET next_in_seq = %s, updated_at = now() "
            "WHERE sender_comp_id = %s AND next_in_seq < %s",
            [next_in_seq, sender_comp_id, next_in_seq],
        )


def journal_write(*, sender_comp_id: str, entries: list[JournalEntry]) -> None:
    FixJournal.objects.bulk_create(
        FixJournal(
            session=sender_comp_id,
            seq=entry.seq,
            msg_type=entry.msg_type,
            trade_id=entry.trade_id,
            body=entry.body,
            sending_time=entry.sending_time,
        )
        for entry in entries
    )


def journal_range(*, sender_comp_id: str, first: int, last: int) -> list[FixJournal]:
    """The journaled application messages with ``first <= seq <= last``."""
    return list(
        FixJournal.objects.filter(
            session=sender_comp_id, seq__gte=first, seq__lte=last
        ).order_by("seq")
    )


def journaled(*, sender_comp_id: str, trade_ids: list[object], msg_type: str) -> set:
    """The trades among ``trade_ids`` that already have a ``msg_type`` message in
    the journal (sent, or about to be resent on request)."""
    return set(
        FixJournal.objects.filter(
            session=sender_comp_id, trade_id__in=trade_ids, msg_type=msg_type
        ).values_list("trade_id", flat=True)
    )
