"""Persistent FIX session state, in the exchange's SQLite store (same file, same
lock as the orders): per session the next outgoing and next expected incoming
MsgSeqNum, the position of the session's report feed already turned into
ExecutionReports, and the journal of every message sent.

Contracts:

- :meth:`FixStateStore.journal` allocates an outgoing number, stores the
  message and (for a report from the feed) moves the feed cursor in ONE
  transaction, and only with a compare-and-set on the number the caller
  expected: a message is journaled before a byte of it is written, and a report
  is either journaled (then delivered, or recovered by ResendRequest) or still
  ahead of the cursor (then sent after the next logon) — never both, never
  neither, across a crash.
- The journal keeps the body fields exactly as sent, so a resend repeats the
  message with its original MsgSeqNum and body.
- A sequence reset (ResetSeqNumFlag) starts both numbers at 1 and drops the
  journal: numbers of the old sequence can never be asked for again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from exchange_mock.store import OrderStore


class SequenceConflict(RuntimeError):
    """The stored next outgoing number is not the one the caller allocated from
    (two writers for one session: a bug, never silently overwritten)."""


@dataclass
class SessionState:
    """The persisted numbers of one session (mutated by its owner under the
    session's lock, always after the store accepted the change)."""

    next_out: int = 1
    next_in: int = 1
    feed_cursor: int = 0


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    msg_type: str
    sending_time: str
    body: list[tuple[int, str]]


class FixStateStore:
    """Reads and writes of the FIX tables. Thread-safe (the store's lock)."""

    def __init__(self, store: OrderStore) -> None:
        self._store = store

    def load_or_create(self, session_id: str) -> SessionState:
        """The session's state; a session seen for the first time starts at 1/1
        and at the beginning of its feed."""
        with self._store.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO fix_sessions "
                "(session_id, next_out, next_in, feed_cursor) VALUES (?, 1, 1, 0)",
                (session_id,),
            )
            next_out, next_in, cursor = conn.execute(
                "SELECT next_out, next_in, feed_cursor FROM fix_sessions "
                "WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        return SessionState(int(next_out), int(next_in), int(cursor))

    def journal(
        self,
        session_id: str,
        seq: int,
        msg_type: str,
        sending_time: str,
        body: Sequence[tuple[int, object]],
        *,
        feed_seq: int | None = None,
    ) -> None:
        """Store message ``seq`` and make ``seq + 1`` the next outgoing number
        (and ``feed_seq`` the feed cursor, if given), in one transaction.
        Raises :class:`SequenceConflict` if ``seq`` is not the stored next."""
        fields = [[tag, str(value)] for tag, value in body]
        with self._store.transaction() as conn:
            updated = conn.execute(
                "UPDATE fix_sessions SET next_out = ?, "
                "feed_cursor = COALESCE(?, feed_cursor) "
                "WHERE session_id = ? AND next_out = ?",
                (seq + 1, feed_seq, session_id, seq),
            ).rowcount
            if updated != 1:
                raise SequenceConflict(f"session {session_id}: next_out is not {seq}")
            conn.execute(
                "INSERT INTO fix_journal "
                "(session_id, seq, msg_type, sending_time, body) "
                "VALUES (?, ?, ?, ?, ?)",
                (session_id, seq, msg_type, sending_time, json.dumps(fields)),
            )

    def set_next_in(self, session_id: str, next_in: int) -> None:
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE fix_sessions SET next_in = ? WHERE session_id = ?",
                (next_in, session_id),
            )

    def reset(self, session_id: str) -> None:
        """Both numbers back to 1, the journal emptied (the feed cursor stays:
        reports already sent are not sent again)."""
        with self._store.transaction() as conn:
            conn.execute(
                "UPDATE fix_sessions SET next_out = 1, next_in = 1 "
                "WHERE session_id = ?",
                (session_id,),
            )
            conn.execute("DELETE FROM fix_journal WHERE session_id = ?", (session_id,))

    def sessions(self) -> dict[str, SessionState]:
        """Every session's numbers, by SenderCompID (test introspection)."""
        with self._store.transaction() as conn:
            rows = conn.execute(
                "SELECT session_id, next_out, next_in, feed_cursor FROM fix_sessions"
            ).fetchall()
        return {
            session_id: SessionState(int(next_out), int(next_in), int(cursor))
            for session_id, next_out, next_in, cursor in rows
        }

    def messages(self, session_id: str, begin: int, end: int) -> list[JournalEntry]:
        """The journaled messages with ``begin <= seq <= end``, in order."""
        with self._store.transaction() as conn:
            rows = conn.execute(
                "SELECT seq, msg_type, sending_time, body FROM fix_journal "
                "WHERE session_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
                (session_id, begin, end),
            ).fetchall()
        return [
            JournalEntry(
                int(seq),
                msg_type,
                sending_time,
                [(int(tag), value) for tag, value in json.loads(body)],
            )
            for seq, msg_type, sending_time, body in rows
        ]
