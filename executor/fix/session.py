"""The FIX 4.4 initiator session of one led topic (docs/FIX.md, "Session layer").

One thread per session (``run``) owns the connection: it connects and logs on,
reads and frames what arrives, answers the session layer (heartbeats, test
requests, resend requests, sequence resets, logouts), detects gaps and asks for
them again, and hands application messages, in sequence order, to ``on_app``
inside the fenced transaction that also moves the expected incoming number. The
leader's thread sends orders through ``sending()``: their sequence numbers and
journal rows are written in the same fenced transaction as the leader's own
writes, and only then do they go on the wire.

Every message we send takes its sequence number from PostgreSQL first, under the
fence, so a deposed leader cannot send a single numbered message; a new leader
continues the numbering and recovers, by the standard resend mechanism, whatever
was journaled and never delivered or delivered and never booked.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import close_old_connections, connection

from broker.models import QuarantinedMessage
from broker.observability.metrics import FIX_EVENTS, FIX_LOGGED_ON
from executor.fencing import Fence, Fenced
from executor.fix import state
from executor.fix.codec import (
    ADMIN_TYPES,
    Framer,
    Garbled,
    Message,
    MsgType,
    Tag,
    body_fields,
    body_text,
    encode,
    printable,
    utc_timestamp,
)
from executor.retry import (
    DATABASE_OUTAGES,
    Backoff,
    Poisoned,
    RetryPolicy,
    until_poisoned,
)

logger = logging.getLogger(__name__)

# How long one read waits: the granularity of the heartbeat timers and of
# noticing a stop.
TICK_SECONDS = 0.05
# After sending a Logout, how long to wait for the answer before closing.
LOGOUT_WAIT_SECONDS = 2.0
# Reconnects back off from 50 ms to this.
MAX_RECONNECT_DELAY = 2.0
# Application messages booked per transaction at most.
BOOK_BATCH = 200
# A ResendRequest still being answered (the expected number moving towards the
# gap's end) is not repeated; one with no progress for this long is asked again
# (its answer lost on the way).
RESEND_PATIENCE_SECONDS = 3.0
# The expected number moved by administrative messages only is stored this often.
STORE_NEXT_IN_SECONDS = 1.0
# SessionRejectReason(373) values we send.
REJECT_REQUIRED_TAG_MISSING = "1"
REJECT_INCORRECT_DATA_FORMAT = "6"
REJECT_COMP_ID_PROBLEM = "9"


class Disconnect(Exception):
    """End this connection (the session reconnects unless it is stopping)."""


class SessionRefused(Disconnect):
    """The acceptor ended the logon (a Logout in answer, or a closed socket)."""


@dataclass(frozen=True)
class SessionConfig:
    sender_comp_id: str
    target_comp_id: str
    host: str
    port: int
    heartbeat_seconds: int = 30
    username: str = ""
    password: str = ""
    connect_timeout: float = 5.0


@dataclass
class Outgoing:
    """An application message to send: its type, its fields, and the trade it is
    about (for the journal)."""

    msg_type: str
    body: list[tuple[int, object]]
    trade_id: object = None
    seq: int = 0
    sending_time: str = ""


@dataclass
class Outbox:
    """What one ``sending()`` block sends, in order."""

    messages: list[Outgoing] = field(default_factory=list)

    def add(
        self, msg_type: str, body: list[tuple[int, object]], trade_id: object = None
    ) -> None:
        self.messages.append(Outgoing(msg_type, body, trade_id))


# on_app(messages): book application messages inside the session's fenced
# transaction (raising rolls the whole batch back); returns what to send once
# that transaction has committed (reconciliation follow-ups, Rejects).
AppHandler = Callable[[list[Message]], list[Outgoing]]


class FixSession:
    def __init__(
        self,
        *,
        config: SessionConfig,
        topic: str,
        fence: Fence,
        on_app: AppHandler,
        stop: threading.Event,
        lost: threading.Event,
        on_logon: Callable[[], None] | None = None,
        on_poison: Callable[[Message, str], None] | None = None,
    ) -> None:
        self.config = config
        self.topic = topic
        self._fence = fence
        self._on_app = on_app
        self._on_logon = on_logon
        self._on_poison = on_poison or self._quarantine_poisoned
        self._stop = stop
        self._lost = lost
        self._send_lock = threading.RLock()
        self._sock: socket.socket | None = None
        self._logged_on = threading.Event()
        self._framer = Framer()
        # Expected incoming number in memory, and what PostgreSQL has (the
        # difference is administrative traffic, stored lazily).
        self._next_in = 0
        self._stored_next_in = 0
        self._stored_at = 0.0
        self._logon_seq = 0
        self._held: dict[int, Message] = {}
        # ResendRequests answered when they arrived above a gap.
        self._answered_early: set[int | None] = set()
        self._resend_pending_until = 0
        self._resend_progress = (0, 0.0)
        self._last_sent = 0.0
        self._last_received = 0.0
        self._test_request: tuple[str, float] | None = None
        self._logout_sent_at: float | None = None
        self._heartbeat = config.heartbeat_seconds
        self.stats = {"sent": 0, "received": 0, "resent": 0, "gaps": 0}

    # -- the leader's side ------------------------------------------------------

    def prepare(self) -> None:
        """Create the session's state row if this is its first leader ever; the
        leader calls it before it sends anything."""
        with self._fence.transaction():
            state.session_state(
                sender_comp_id=self.config.sender_comp_id, topic=self.topic
            )

    @property
    def logged_on(self) -> bool:
        return self._logged_on.is_set()

    def wait_logged_on(self, timeout: float) -> bool:
        return self._logged_on.wait(timeout)

    @contextlib.contextmanager
    def sending(self) -> Iterator[Outbox]:
        """A fenced transaction whose writes commit together with the sequence
        numbers and journal rows of the messages added to the yielded outbox;
        after the commit, the messages go on the wire (when logged on: otherwise
        the next logon's resend recovers them). Holds the send lock throughout,
        so sequence numbers reach the wire in order."""
        outbox = Outbox()
        with self._send_lock:
            with self._fence.transaction():
                yield outbox
                if outbox.messages:
                    self._number_and_journal(outbox.messages)
            if outbox.messages and self._logged_on.is_set():
                self._write_all(
                    [self._encode_app(message) for message in outbox.messages]
                )

    def _number_and_journal(self, messages: list[Outgoing]) -> None:
        first = state.seq_allocate(
            sender_comp_id=self.config.sender_comp_id, count=len(messages)
        )
        now = utc_timestamp()
        entries = []
        for offset, message in enumerate(messages):
            message.seq = first + offset
            message.sending_time = now
            entries.append(
                state.JournalEntry(
                    seq=message.seq,
                    msg_type=message.msg_type,
                    body=body_text(message.body),
                    sending_time=now,
                    trade_id=message.trade_id,
                )
            )
        state.journal_write(sender_comp_id=self.config.sender_comp_id, entries=entries)

    def _encode_app(self, message: Outgoing) -> bytes:
        return encode(
            msg_type=message.msg_type,
            sender=self.config.sender_comp_id,
            target=self.config.target_comp_id,
            seq=message.seq,
            body=message.body,
            sending_time=message.sending_time,
        )

    # -- the session thread -----------------------------------------------------

    def run(self) -> None:
        """Connect, log on, serve the session; reconnect with backoff, until
        stopped or fenced (which sets ``lost`` for the leader to see)."""
        backoff = Backoff(RetryPolicy(first_delay=0.05, max_delay=MAX_RECONNECT_DELAY))
        try:
            close_old_connections()
            while not self._stopping():
                try:
                    self._connect()
                    self._logon()
                    backoff.reset()
                    self._serve()
                except (Disconnect, OSError) as exc:
                    self._close(f"{type(exc).__name__}: {exc}")
                    if self._stopping():
                        break
                    delay = backoff.next()
                    logger.warning(
                        "fix disconnected session=%s reason=%s retry_in=%.2fs",
                        self.config.sender_comp_id,
                        exc,
                        delay,
                    )
                    self._stop.wait(delay)
                except DATABASE_OUTAGES as exc:
                    self._close(f"database unavailable: {exc}")
                    close_old_connections()
                    self._stop.wait(1.0)
        except Fenced as exc:
            logger.warning(
                "fix session fenced session=%s reason=%s",
                self.config.sender_comp_id,
                exc,
            )
            self._lost.set()
        except Exception:
            logger.exception(
                "fix session crashed session=%s", self.config.sender_comp_id
            )
            self._lost.set()
        finally:
            self._close("stopping")
            connection.close()  # this thread's own database connection

    def _stopping(self) -> bool:
        return self._stop.is_set() or self._lost.is_set()

    def _connect(self) -> None:
        self._fence.check_alive()
        sock = socket.create_connection(
            (self.config.host, self.config.port), timeout=self.config.connect_timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        self._sock = sock
        self._framer = Framer()
        self._held.clear()
        self._answered_early.clear()
        self._resend_pending_until = 0
        self._resend_progress = (0, 0.0)
        self._test_request = None
        self._logout_sent_at = None

    def _logon(self) -> None:
        """Send our Logon (numbered like every message) and wait for the
        acceptor's; a Logout or a closed connection instead is a refusal."""
        with self._fence.transaction():
            current = state.session_state(
                sender_comp_id=self.config.sender_comp_id, topic=self.topic
            )
            reset = current.reset_requested
            if reset:
                state.session_reset(sender_comp_id=self.config.sender_comp_id)
                seq = 1
            else:
                seq = state.seq_allocate(sender_comp_id=self.config.sender_comp_id)
        self._next_in = self._stored_next_in = 1 if reset else current.next_in_seq
        self._logon_seq = seq
        epoch = f"epoch={self._fence.epoch}"
        body: list[tuple[int, object]] = [
            (Tag.ENCRYPT_METHOD, 0),
            (Tag.HEART_BT_INT, self._heartbeat),
        ]
        if reset:
            body.append((Tag.RESET_SEQ_NUM_FLAG, "Y"))
        if self.config.username:
            body.append((Tag.USERNAME, self.config.username))
        if self.config.password:
            body.append((Tag.PASSWORD, self.config.password))
        body += [(Tag.RAW_DATA_LENGTH, len(epoch)), (Tag.RAW_DATA, epoch)]
        self._write(self._encode_admin(MsgType.LOGON, seq, body))
        deadline = time.monotonic() + max(10.0, self.config.connect_timeout)
        while not self._logged_on.is_set():
            if self._stopping():
                raise Disconnect("stopping during logon")
            if time.monotonic() > deadline:
                raise Disconnect("no Logon answer")
            items = self._read()
            for index, item in enumerate(items):
                if isinstance(item, Garbled):
                    self._quarantine_garbled(item)
                    continue
                if item.msg_type == MsgType.LOGOUT:
                    FIX_EVENTS.labels(self.topic, "logon_refused").inc()
                    text = item.get(Tag.TEXT) or ""
                    if "stale epoch" in text.lower():
                        raise Fenced(f"the exchange refused our epoch: {text}")
                    raise SessionRefused(f"logon refused: {text or 'no reason'}")
                if item.msg_type != MsgType.LOGON:
                    raise Disconnect(f"expected Logon, got MsgType {item.msg_type}")
                self._logged_on_with(item)
                # What came in the same read behind the Logon (a ResendRequest
                # for what we numbered before it, the first reports) is the
                # session's like any later frame: dropped, it would be lost.
                self._process(items[index + 1 :])
                break

    def _logged_on_with(self, logon: Message) -> None:
        interval = logon.get(Tag.HEART_BT_INT)
        if interval and interval.isdigit() and int(interval) > 0:
            self._heartbeat = int(interval)
        self._last_received = time.monotonic()
        self._go_live()
        FIX_LOGGED_ON.labels(self.topic).set(1)
        FIX_EVENTS.labels(self.topic, "logon").inc()
        logger.info(
            "fix logged on session=%s epoch=%s next_in=%s",
            self.config.sender_comp_id,
            self._fence.epoch,
            self._next_in,
        )
        seq = logon.seq
        if logon.get(Tag.RESET_SEQ_NUM_FLAG) == "Y":
            self._next_in = 1
        if seq is not None and seq > self._next_in:
            self._gap(seq, logon)
        elif seq is not None and seq == self._next_in:
            self._next_in += 1
        elif seq is not None and seq < self._next_in:
            self._too_low(logon)
        if self._on_logon is not None:
            self._on_logon()

    def _go_live(self) -> None:
        """Logged on: from now on ``sending()`` writes at once. Whatever the
        leader numbered while the Logon was on its way (after the Logon's own
        number, so never written on an earlier connection) goes out first, in
        order, under the send lock: it would otherwise wait for the acceptor to
        notice the gap."""
        with self._send_lock:
            with self._fence.transaction():
                current = state.session_state(
                    sender_comp_id=self.config.sender_comp_id, topic=self.topic
                )
                waiting = state.journal_range(
                    sender_comp_id=self.config.sender_comp_id,
                    first=self._logon_seq + 1,
                    last=current.next_out_seq - 1,
                )
            self._logged_on.set()
            self._write_all([self._journaled(row, resend=False) for row in waiting])

    def _serve(self) -> None:
        while not self._stopping():
            items = self._read()
            self._process(items)
            self._timers()
        self._logout("stopping")

    # -- reading ----------------------------------------------------------------

    def _read(self) -> list[Message | Garbled]:
        sock = self._sock
        if sock is None:
            raise Disconnect("not connected")
        ready, _, _ = select.select([sock], [], [], TICK_SECONDS)
        if not ready:
            return []
        data = sock.recv(65536)
        if not data:
            raise SessionRefused("connection closed by the exchange")
        items = self._framer.feed(data)
        if items:
            self._last_received = time.monotonic()
            self._test_request = None
        return items

    def _process(self, items: list[Message | Garbled]) -> None:
        """Session rules for each frame, in order; application messages that are
        next in sequence are booked together at the end."""
        ready: list[Message] = []
        for item in items:
            if isinstance(item, Garbled):
                self._book(ready)
                ready = []
                self._quarantine_garbled(item)
                continue
            self.stats["received"] += 1
            for message in self._sequenced(item):
                if message.msg_type in ADMIN_TYPES:
                    self._book(ready)
                    ready = []
                    self._admin(message)
                else:
                    ready.append(message)
                    if len(ready) >= BOOK_BATCH:
                        self._book(ready)
                        ready = []
        self._book(ready)

    def _sequenced(self, message: Message) -> list[Message]:
        """The messages now processable in order: this one (if it is the next),
        then any held ones it unblocks. Handles gaps, duplicates and resets."""
        problem = self._header_problem(message)
        if problem:
            self._reject(message, problem)
            return []
        seq = message.seq
        assert seq is not None  # _header_problem checked it
        if (
            message.msg_type == MsgType.SEQUENCE_RESET
            and message.get(Tag.GAP_FILL_FLAG) != "Y"
        ):
            # A reset (not a gap fill) ignores its own number.
            self._sequence_reset(message)
            return self._release_held()
        if seq < self._next_in:
            if message.poss_dup:
                FIX_EVENTS.labels(self.topic, "duplicate").inc()
                return []
            self._too_low(message)
            return []
        if seq > self._next_in:
            self._held[seq] = message
            self._gap(seq, message)
            if message.msg_type == MsgType.RESEND_REQUEST:
                # Answered at once, whatever its number (the standard's rule):
                # the peer may be waiting for it to fill the very gap we are
                # asking about. Held only to count its number when reached.
                self._resend(message)
                self._answered_early.add(seq)
            return []
        processable = [message]
        if message.msg_type == MsgType.SEQUENCE_RESET:
            self._sequence_reset(message)
        else:
            self._next_in = seq + 1
        return processable + self._release_held()

    def _release_held(self) -> list[Message]:
        released = []
        while self._next_in in self._held:
            message = self._held.pop(self._next_in)
            released.append(message)
            if message.msg_type == MsgType.SEQUENCE_RESET:
                self._sequence_reset(message)
            else:
                self._next_in += 1
        for seq in [s for s in self._held if s < self._next_in]:
            del self._held[seq]
        return released

    def _header_problem(self, message: Message) -> tuple[str, str] | None:
        """(SessionRejectReason, text) when the header is unusable."""
        if message.seq is None:
            return REJECT_REQUIRED_TAG_MISSING, "MsgSeqNum(34) missing or not a number"
        if not message.msg_type:
            return REJECT_REQUIRED_TAG_MISSING, "MsgType(35) missing"
        if message.get(Tag.SENDER_COMP_ID) != self.config.target_comp_id or (
            message.get(Tag.TARGET_COMP_ID) != self.config.sender_comp_id
        ):
            return REJECT_COMP_ID_PROBLEM, "CompIDs are not this session's"
        return None

    def _gap(self, seq: int, message: Message) -> None:
        """A message above the expected number: ask for what is missing (once per
        gap: a ResendRequest to infinity covers everything up to now)."""
        if self._resend_outstanding():
            return
        self.stats["gaps"] += 1
        FIX_EVENTS.labels(self.topic, "gap").inc()
        logger.warning(
            "fix gap session=%s expected=%s received=%s type=%s",
            self.config.sender_comp_id,
            self._next_in,
            seq,
            message.msg_type,
        )
        self._resend_pending_until = seq
        self._resend_progress = (self._next_in, time.monotonic())
        self._send_admin(
            MsgType.RESEND_REQUEST,
            [(Tag.BEGIN_SEQ_NO, self._next_in), (Tag.END_SEQ_NO, 0)],
        )

    def _resend_outstanding(self) -> bool:
        """Whether our last ResendRequest (to infinity: it covers every later
        message too) is still being answered: its gap not closed yet, and the
        expected number moved within RESEND_PATIENCE_SECONDS."""
        if self._next_in > self._resend_pending_until:
            return False
        now = time.monotonic()
        if self._next_in != self._resend_progress[0]:
            self._resend_progress = (self._next_in, now)
        return now - self._resend_progress[1] < RESEND_PATIENCE_SECONDS

    def _too_low(self, message: Message) -> None:
        """Lower than expected and not a possible duplicate: the standard says
        end the session; operations must look (both sides' numbers disagree)."""
        FIX_EVENTS.labels(self.topic, "seq_too_low").inc()
        text = (
            f"MsgSeqNum too low, expecting {self._next_in} but received {message.seq}"
        )
        logger.error("fix %s session=%s", text, self.config.sender_comp_id)
        self._logout(text)
        raise Disconnect(text)

    def _sequence_reset(self, message: Message) -> None:
        new_seq = message.get(Tag.NEW_SEQ_NO)
        if not new_seq or not new_seq.isdigit():
            self._reject(message, (REJECT_REQUIRED_TAG_MISSING, "NewSeqNo(36) missing"))
            return
        target = int(new_seq)
        if target > self._next_in:
            self._next_in = target
        elif target < self._next_in:
            logger.warning(
                "fix sequence reset backwards ignored session=%s new=%s expected=%s",
                self.config.sender_comp_id,
                target,
                self._next_in,
            )

    # -- the session layer ------------------------------------------------------

    def _admin(self, message: Message) -> None:
        kind = message.msg_type
        if kind == MsgType.HEARTBEAT:
            return
        if kind == MsgType.TEST_REQUEST:
            test_id = message.get(Tag.TEST_REQ_ID) or ""
            self._send_admin(MsgType.HEARTBEAT, [(Tag.TEST_REQ_ID, test_id)])
        elif kind == MsgType.RESEND_REQUEST:
            if message.seq not in self._answered_early:
                self._resend(message)
            self._answered_early.discard(message.seq)
        elif kind == MsgType.REJECT:
            FIX_EVENTS.labels(self.topic, "rejected_by_exchange").inc()
            logger.warning(
                "fix reject from exchange session=%s ref_seq=%s ref_type=%s "
                "reason=%s text=%s",
                self.config.sender_comp_id,
                message.get(Tag.REF_SEQ_NUM),
                message.get(Tag.REF_MSG_TYPE),
                message.get(Tag.SESSION_REJECT_REASON),
                message.get(Tag.TEXT),
            )
            self._book([message])
        elif kind == MsgType.LOGOUT:
            text = message.get(Tag.TEXT) or ""
            if self._logout_sent_at is None:
                self._send_admin(MsgType.LOGOUT, [])
            if "stale epoch" in text.lower():
                raise Fenced(f"the exchange logged us out: {text}")
            raise Disconnect(f"logout from the exchange: {text or 'no reason'}")
        elif kind == MsgType.LOGON:
            logger.warning(
                "fix unexpected Logon ignored session=%s", self.config.sender_comp_id
            )

    def _resend(self, request: Message) -> None:
        """Answer a ResendRequest from the journal: application messages again
        with PossDupFlag and OrigSendingTime, administrative ones as GapFills."""
        begin_raw = request.get(Tag.BEGIN_SEQ_NO) or ""
        end_raw = request.get(Tag.END_SEQ_NO) or ""
        if not (begin_raw.isdigit() and end_raw.isdigit()):
            self._reject(request, (REJECT_INCORRECT_DATA_FORMAT, "BeginSeqNo/EndSeqNo"))
            return
        with self._send_lock:
            with self._fence.transaction():
                current = state.session_state(
                    sender_comp_id=self.config.sender_comp_id, topic=self.topic
                )
                last = current.next_out_seq - 1
                end = last if int(end_raw) in (0, 999999) else min(int(end_raw), last)
                begin = max(1, int(begin_raw))
                journal = state.journal_range(
                    sender_comp_id=self.config.sender_comp_id, first=begin, last=end
                )
            FIX_EVENTS.labels(self.topic, "resend_request").inc()
            logger.info(
                "fix resend session=%s from=%s to=%s journaled=%s",
                self.config.sender_comp_id,
                begin,
                end,
                len(journal),
            )
            frames = []
            gap_start = begin
            for row in journal:
                if row.seq > gap_start:
                    frames.append(self._gap_fill(gap_start, row.seq))
                frames.append(self._journaled(row, resend=True))
                gap_start = row.seq + 1
            if gap_start <= end:
                frames.append(self._gap_fill(gap_start, end + 1))
            self.stats["resent"] += len(journal)
            self._write_all(frames)

    def _journaled(self, row, *, resend: bool) -> bytes:
        """A journaled message as first sent, or as a resend (PossDupFlag, its
        first SendingTime as OrigSendingTime)."""
        return encode(
            msg_type=row.msg_type,
            sender=self.config.sender_comp_id,
            target=self.config.target_comp_id,
            seq=row.seq,
            body=body_fields(row.body),
            sending_time=None if resend else row.sending_time,
            poss_dup=resend,
            orig_sending_time=row.sending_time if resend else None,
        )

    def _gap_fill(self, seq: int, new_seq: int) -> bytes:
        return encode(
            msg_type=MsgType.SEQUENCE_RESET,
            sender=self.config.sender_comp_id,
            target=self.config.target_comp_id,
            seq=seq,
            body=[(Tag.GAP_FILL_FLAG, "Y"), (Tag.NEW_SEQ_NO, new_seq)],
            poss_dup=True,
        )

    def _reject(self, message: Message, problem: tuple[str, str]) -> None:
        """A frame we can read but not accept: a session-level Reject when its
        number is known (and it counts as received), and a quarantine record."""
        reason, text = problem
        FIX_EVENTS.labels(self.topic, "rejected").inc()
        logger.warning(
            "fix rejecting message session=%s seq=%s reason=%s: %s",
            self.config.sender_comp_id,
            message.seq,
            reason,
            text,
        )
        self._quarantine(
            message.seq, message.msg_type, message.raw, f"rejected: {text}"
        )
        if message.seq is not None:
            body: list[tuple[int, object]] = [
                (Tag.REF_SEQ_NUM, message.seq),
                (Tag.SESSION_REJECT_REASON, reason),
                (Tag.TEXT, text[:200]),
            ]
            if message.msg_type:
                body.insert(1, (Tag.REF_MSG_TYPE, message.msg_type))
            self._send_admin(MsgType.REJECT, body)
            if message.seq == self._next_in:
                self._next_in += 1

    def _timers(self) -> None:
        now = time.monotonic()
        if self._logout_sent_at is not None:
            if now - self._logout_sent_at > LOGOUT_WAIT_SECONDS:
                raise Disconnect("no answer to our Logout")
            return
        if now - self._last_sent >= self._heartbeat:
            self._send_admin(MsgType.HEARTBEAT, [])
        if self._test_request is not None:
            if now - self._test_request[1] >= self._heartbeat:
                FIX_EVENTS.labels(self.topic, "test_request_timeout").inc()
                raise Disconnect("no answer to our TestRequest")
        elif now - self._last_received >= self._heartbeat * 1.2:
            test_id = f"TEST-{int(time.time() * 1000)}"
            self._test_request = (test_id, now)
            self._send_admin(MsgType.TEST_REQUEST, [(Tag.TEST_REQ_ID, test_id)])
        if self._held and not self._resend_outstanding():
            # Still a gap, and the answer to our request is lost: ask again.
            highest = max(self._held)
            self._gap(highest, self._held[highest])
        if (
            self._stored_next_in < self._next_in
            and now - self._stored_at >= STORE_NEXT_IN_SECONDS
        ):
            # Only administrative traffic since the last booking: store how far
            # we are now and then (a successor then asks for less again).
            self._store_next_in()

    def _logout(self, text: str) -> None:
        """Say goodbye when we can (losing the fence means we cannot even number
        a Logout: the connection is simply closed)."""
        if self._sock is None or self._logout_sent_at is not None:
            return
        with contextlib.suppress(Fenced, OSError, *DATABASE_OUTAGES):
            self._send_admin(MsgType.LOGOUT, [(Tag.TEXT, text[:200])])
            self._logout_sent_at = time.monotonic()
            deadline = time.monotonic() + LOGOUT_WAIT_SECONDS
            while time.monotonic() < deadline:
                for item in self._read():
                    if isinstance(item, Message) and item.msg_type == MsgType.LOGOUT:
                        return

    # -- booking ----------------------------------------------------------------

    def _book(self, messages: list[Message]) -> None:
        """Book application messages and store the expected number, in one
        fenced transaction."""
        if not messages and self._stored_next_in >= self._next_in:
            return
        try:
            follow_ups = self._book_in_one(messages, self._next_in)
        except (Fenced, *DATABASE_OUTAGES):
            raise
        except Exception:
            logger.exception(
                "fix booking failed, booking one by one session=%s seqs=%s..%s",
                self.config.sender_comp_id,
                messages[0].seq,
                messages[-1].seq,
            )
            follow_ups = self._book_one_by_one(messages)
        self._stored_next_in = self._next_in
        self._stored_at = time.monotonic()
        # Only now: a message numbered inside a transaction that then rolled
        # back would reuse its number.
        for message in follow_ups:
            if message.msg_type in ADMIN_TYPES:
                self._send_admin(message.msg_type, message.body)
        application = [m for m in follow_ups if m.msg_type not in ADMIN_TYPES]
        if application:
            with self.sending() as outbox:
                outbox.messages.extend(application)

    def _book_in_one(self, messages: list[Message], next_in: int) -> list[Outgoing]:
        follow_ups: list[Outgoing] = []
        with self._fence.transaction():
            if messages:
                follow_ups = self._on_app(messages)
            state.next_in_advance(
                sender_comp_id=self.config.sender_comp_id, next_in_seq=next_in
            )
        return follow_ups

    def _book_one_by_one(self, messages: list[Message]) -> list[Outgoing]:
        """The poison rule for the exchange's messages: one that fails to book
        every time is set aside (``on_poison``: quarantined, its trade flagged)
        and the session moves past it, so it never stalls the reports behind."""
        follow_ups: list[Outgoing] = []
        for message in messages:
            after = (message.seq or 0) + 1
            try:
                follow_ups += until_poisoned(
                    lambda message=message, after=after: self._book_in_one(
                        [message], after
                    ),
                    fence=self._fence,
                    policy=RetryPolicy(),
                    what=f"booking session={self.config.sender_comp_id} "
                    f"seq={message.seq}",
                    wait_outages=False,
                )
            except Poisoned as exc:
                with self._fence.transaction():
                    self._on_poison(message, f"booking failed: {exc.reason}")
                    state.next_in_advance(
                        sender_comp_id=self.config.sender_comp_id, next_in_seq=after
                    )
        with self._fence.transaction():
            state.next_in_advance(
                sender_comp_id=self.config.sender_comp_id, next_in_seq=self._next_in
            )
        return follow_ups

    def _store_next_in(self) -> None:
        with self._fence.transaction():
            state.next_in_advance(
                sender_comp_id=self.config.sender_comp_id, next_in_seq=self._next_in
            )
        self._stored_next_in = self._next_in
        self._stored_at = time.monotonic()

    def _quarantine_garbled(self, garbled: Garbled) -> None:
        FIX_EVENTS.labels(self.topic, "garbled").inc()
        logger.warning(
            "fix garbled frame session=%s reason=%s bytes=%s",
            self.config.sender_comp_id,
            garbled.reason,
            len(garbled.raw),
        )
        self._quarantine(None, "", garbled.raw, f"garbled: {garbled.reason}")

    def _quarantine_poisoned(self, message: Message, reason: str) -> None:
        """Default ``on_poison``, inside the caller's fenced transaction."""
        QuarantinedMessage.objects.create(
            session=self.config.sender_comp_id,
            seq=message.seq,
            msg_type=message.msg_type[:8],
            reason=reason[:500],
            raw=message.text()[:20000],
            epoch=self._fence.epoch,
        )

    def _quarantine(self, seq: int | None, msg_type: str, raw: bytes, reason: str):
        with self._fence.transaction():
            QuarantinedMessage.objects.create(
                session=self.config.sender_comp_id,
                seq=seq,
                msg_type=msg_type[:8],
                reason=reason[:500],
                raw=printable(raw[:20000]),
                epoch=self._fence.epoch,
            )

    # -- writing ----------------------------------------------------------------

    def _send_admin(self, msg_type: str, body: list[tuple[int, object]]) -> None:
        with self._send_lock:
            with self._fence.transaction():
                seq = state.seq_allocate(sender_comp_id=self.config.sender_comp_id)
            self._write(self._encode_admin(msg_type, seq, body))

    def _encode_admin(
        self, msg_type: str, seq: int, body: list[tuple[int, object]]
    ) -> bytes:
        return encode(
            msg_type=msg_type,
            sender=self.config.sender_comp_id,
            target=self.config.target_comp_id,
            seq=seq,
            body=body,
        )

    def _write(self, frame: bytes) -> None:
        self._write_all([frame])

    def _write_all(self, frames: list[bytes]) -> None:
        sock = self._sock
        if sock is None or not frames:
            return  # journaled: the next logon's resend delivers it
        try:
            sock.sendall(b"".join(frames))
        except OSError as exc:
            # The session thread notices on its next read and reconnects.
            logger.warning(
                "fix write failed session=%s error=%s", self.config.sender_comp_id, exc
            )
            self._logged_on.clear()
            return
        self._last_sent = time.monotonic()
        self.stats["sent"] += len(frames)

    def _close(self, why: str) -> None:
        self._logged_on.clear()
        FIX_LOGGED_ON.labels(self.topic).set(0)
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
            logger.info(
                "fix connection closed session=%s reason=%s",
                self.config.sender_comp_id,
                why,
            )
