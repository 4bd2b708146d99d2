"""The FIX 4.4 session layer of the acceptor (docs/FIX.md): one
:class:`FixSession` per SenderCompID (its persisted numbers, its journal, its
current connection) and one :class:`FixConnection` per TCP connection (framing,
logon, sequence checks, heartbeats, resends).

Threads and locks: a connection has a reader thread (everything received) and,
once logged on, a pump thread (reports from the session's feed, heartbeat and
TestRequest timers). Both act only under the session's lock and only while the
connection is the session's current one, so sending (number, journal, socket
write) is one ordered stream per session, and a superseded connection can
neither send nor have what it receives processed. Lock order: session lock,
then the engine's, then the store's — the engine never calls back into FIX.

Sequence numbers:

- outgoing: journaled with its number before it is written
  (:meth:`FixStateStore.journal`); a resend answers from the journal;
- incoming: the expected one is processed and then the expected number is
  stored. A crash in between means the peer's message comes again (resent
  after our ResendRequest, PossDupFlag=Y) and is processed again: the engine's
  effects are idempotent (orders by ClOrdID, cancels of terminal orders change
  nothing, status requests only read), so nothing happens twice;
- too low without PossDupFlag: Logout ``MsgSeqNum too low, expecting <n> but
  received <m>`` and disconnect; with PossDupFlag: passed over;
- too high: held (not processed), one ResendRequest(expected, 0); the held
  messages run once the gap is filled. A ResendRequest and a Logout are acted
  on at once even beyond a gap (both sides may wait on each other otherwise),
  a SequenceReset without GapFill whatever its number.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from typing import TYPE_CHECKING, Protocol

from exchange_mock.fixapp import (
    BUSINESS_MESSAGE_REJECT,
    EXECUTION_REPORT,
    report_fields,
)
from exchange_mock.fixcodec import (
    DecodeError,
    Framer,
    Garbage,
    Message,
    decode,
    encode,
    garble,
    printable,
    utc_timestamp,
)
from exchange_mock.fixrules import (
    COMP_ID_PROBLEM,
    COMP_ID_RE,
    INVALID_TAG_NUMBER,
    VALUE_OUT_OF_RANGE,
    FieldError,
    check,
)
from exchange_mock.fixstore import FixStateStore, SessionState
from exchange_mock.logfmt import log_event
from exchange_mock.sessions import MAX_EPOCH, Fence, StaleEpoch
from exchange_mock.wire import utcnow

if TYPE_CHECKING:
    from exchange_mock.engine import Exchange
    from exchange_mock.faults import Faults
    from exchange_mock.fixapp import FixApplication

logger = logging.getLogger(__name__)


class Acceptor(Protocol):
    """What a connection and its session need from the server that accepted it
    (exchange_mock.fixserver.FixAcceptor is the one), so the server depends on
    this module and not the other way round."""

    exchange: Exchange
    faults: Faults
    store: FixStateStore
    app: FixApplication
    comp_id: str
    logon_timeout: float
    halt: threading.Event

    def session(self, session_id: str) -> FixSession: ...

    def credentials_ok(self, username: str | None, password: str | None) -> bool: ...

    def forget(self, connection: FixConnection) -> None: ...

    def count(self, event: str) -> None: ...


LOGON = "A"
HEARTBEAT = "0"
TEST_REQUEST = "1"
RESEND_REQUEST = "2"
REJECT = "3"
SEQUENCE_RESET = "4"
LOGOUT = "5"
ADMIN_TYPES = frozenset({LOGON, HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT})
ADMIN_TYPES |= {SEQUENCE_RESET, LOGOUT}

EPOCH_RE = re.compile(r"epoch=([0-9]{1,19})")
MAX_HEARTBEAT = 3600
TEST_REQUEST_FACTOR = 1.2  # silence before a TestRequest, in HeartBtInts
LOGON_TIMEOUT = 10.0  # seconds for the first message of a connection
SOCKET_TIMEOUT = 10.0  # a write blocked this long: the peer is gone
MAX_HELD = 10_000  # messages held behind a gap before giving up the connection
PUMP_BATCH = 200
MAX_TIMER_WAIT = 0.2  # an idle pump's wake-ups (timers, stop)


class ConnectionGone(Exception):
    """The connection ended (peer gone, logged out, superseded): unwind."""


class FixSession:
    """One session (a SenderCompID): its numbers, journal and current
    connection. Every method expects the caller to hold :attr:`lock`."""

    def __init__(
        self, session_id: str, state: SessionState, acceptor: Acceptor
    ) -> None:
        self.id = session_id
        self.state = state
        self.lock = threading.RLock()
        self.connection: FixConnection | None = None
        self._acceptor = acceptor
        self._store: FixStateStore = acceptor.store

    # --- sending ---

    def send(
        self,
        connection: FixConnection,
        msg_type: str,
        fields: list[tuple[int, object]],
        *,
        feed_seq: int | None = None,
        consume: bool = True,
    ) -> int:
        """Number, journal (``consume``; with ``feed_seq`` the feed cursor moves
        in the same transaction) and write one message; returns its MsgSeqNum.
        ``consume=False`` (a refusal on a connection that is not the session's)
        uses the next number without taking it."""
        body = [(tag, value) for tag, value in fields if value is not None]
        seq = self.state.next_out
        sending_time = utc_timestamp(utcnow())
        if consume:
            self._store.journal(
                self.id, seq, msg_type, sending_time, body, feed_seq=feed_seq
            )
            self.state.next_out = seq + 1
            if feed_seq is not None:
                self.state.feed_cursor = feed_seq
        frame = self._encode(msg_type, seq, sending_time, body)
        faults = self._acceptor.faults
        plan = faults.fix_report() if msg_type == EXECUTION_REPORT and consume else None
        if plan is not None and plan.withhold:
            log_event(logger, "fix_fault", fault="withheld", session=self.id, seq=seq)
            return seq
        if plan is not None and plan.garble:
            log_event(logger, "fix_fault", fault="garbled", session=self.id, seq=seq)
            connection.write(garble(frame))
            return seq
        connection.write(frame)
        if plan is not None and plan.duplicate:
            log_event(logger, "fix_fault", fault="duplicated", session=self.id, seq=seq)
            connection.write(
                self._encode(msg_type, seq, utc_timestamp(utcnow()), body, sending_time)
            )
        return seq

    def send_reports(self, connection: FixConnection, reports: list[dict]) -> None:
        """ExecutionReports of the feed reports after the cursor, in order."""
        faults = self._acceptor.faults
        for report in reports:
            if report["seq"] <= self.state.feed_cursor:
                continue  # sent already (by the other thread of the session)
            fields, shifted = report_fields(report, faults.fix_fill_shift())
            if shifted:
                faults.count_fill_outside_limit()
                log_event(
                    logger,
                    "fix_fault",
                    fault="fill_outside_limit",
                    session=self.id,
                    client_order_id=report["client_order_id"],
                )
            self.send(connection, EXECUTION_REPORT, fields, feed_seq=report["seq"])

    def drain_feed(self, connection: FixConnection, upto: int | None = None) -> None:
        """Send every feed report not sent yet (up to feed seq ``upto``)."""
        reports_after = self._acceptor.exchange.store.reports_after
        while True:
            cursor = self.state.feed_cursor
            limit = PUMP_BATCH if upto is None else min(PUMP_BATCH, upto - cursor)
            if limit <= 0:
                return
            reports = reports_after(self.id, cursor, limit)
            if not reports:
                return
            self.send_reports(connection, reports)

    def resend(self, connection: FixConnection, begin: int, end: int) -> None:
        """Answer a ResendRequest: application messages again from the journal
        (original number and body, PossDupFlag=Y, OrigSendingTime, new
        SendingTime); administrative ones, and numbers the journal does not
        hold, as SequenceReset-GapFill."""
        last = self.state.next_out - 1
        begin = max(begin, 1)
        end = last if end == 0 or end > last else end
        log_event(logger, "fix_resend", session=self.id, begin=begin, end=end)
        if begin > end:
            return
        journal = {e.seq: e for e in self._store.messages(self.id, begin, end)}
        gap_from: int | None = None
        for seq in range(begin, end + 1):
            entry = journal.get(seq)
            if entry is None or entry.msg_type in ADMIN_TYPES:
                gap_from = seq if gap_from is None else gap_from
                continue
            if gap_from is not None:
                self._gap_fill(connection, gap_from, seq)
                gap_from = None
            connection.write(
                self._encode(
                    entry.msg_type,
                    seq,
                    utc_timestamp(utcnow()),
                    entry.body,
                    entry.sending_time,
                )
            )
        if gap_from is not None:
            self._gap_fill(connection, gap_from, end + 1)

    def _gap_fill(self, connection: FixConnection, seq: int, new_seq: int) -> None:
        now = utc_timestamp(utcnow())
        connection.write(
            self._encode(SEQUENCE_RESET, seq, now, [(123, "Y"), (36, new_seq)], now)
        )

    def _encode(
        self,
        msg_type: str,
        seq: int,
        sending_time: str,
        body: list[tuple[int, object]],
        orig_sending_time: str | None = None,
    ) -> bytes:
        return encode(
            msg_type,
            sender=self._acceptor.comp_id,
            target=self.id,
            seq_num=seq,
            sending_time=sending_time,
            body=body,
            orig_sending_time=orig_sending_time,
        )

    # --- incoming numbers ---

    def expect(self, next_in: int) -> None:
        """Store the next expected incoming number."""
        if next_in != self.state.next_in:
            self._store.set_next_in(self.id, next_in)
            self.state.next_in = next_in

    def reset(self) -> None:
        """ResetSeqNumFlag: both numbers to 1, the journal emptied."""
        self._store.reset(self.id)
        self.state.next_out = self.state.next_in = 1


class FixConnection:
    """One TCP connection of the acceptor: logon, then the session's traffic
    until a Logout, a disconnect, a heartbeat timeout or a newer logon."""

    def __init__(self, acceptor: Acceptor, sock: socket.socket, peer: str) -> None:
        self.acceptor = acceptor
        self.sock = sock
        self.peer = peer
        self.session: FixSession | None = None
        self.epoch = 0
        self.heartbeat = 0
        self.closed = threading.Event()
        self.last_received = self.last_sent = time.monotonic()
        self._framer = Framer()
        self._test_request_sent_at: float | None = None
        self._test_requests = 0
        self._held: dict[int, Message | DecodeError] = {}
        self._resend_requested_at: float | None = None
        self._answered_resends: set[int] = set()
        self._logon_seq = 0
        self._logging_out = False
        self._pump: threading.Thread | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"fix-{peer}", daemon=True
        )

    # --- the Link protocol of exchange_mock.fixapp ---

    @property
    def session_id(self) -> str:
        assert self.session is not None
        return self.session.id

    @property
    def fence(self) -> Fence:
        return Fence(self.session_id, self.epoch)

    def send(self, msg_type: str, fields: list[tuple[int, object]]) -> None:
        assert self.session is not None
        self.session.send(self, msg_type, fields)

    def drain_feed(self, upto: int | None = None) -> None:
        assert self.session is not None
        self.session.drain_feed(self, upto)

    # --- transport ---

    def start(self) -> None:
        self.thread.start()

    def write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionGone
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.kill(f"write failed: {exc}")
            raise ConnectionGone from exc
        self.last_sent = time.monotonic()

    def kill(self, reason: str) -> None:
        """End the connection now (no Logout); idempotent, never blocks."""
        if self.closed.is_set():
            return
        self.closed.set()
        log_event(
            logger,
            "fix_disconnect",
            session=None if self.session is None else self.session.id,
            peer=self.peer,
            reason=reason,
        )
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def logout(self, text: str) -> None:
        """Send a Logout (the exchange is stopping); the peer's answer, or the
        caller's deadline, ends the connection."""
        session = self.session
        if session is None:
            self.kill(text)
            return
        with session.lock:
            if not self._current():
                return
            self._logging_out = True
            with contextlib.suppress(ConnectionGone):
                session.send(self, LOGOUT, [(58, text)])

    def _current(self) -> bool:
        return (
            not self.closed.is_set()
            and self.session is not None
            and self.session.connection is self
        )

    def _run(self) -> None:
        try:
            self._serve()
        except ConnectionGone:
            pass
        except OSError as exc:
            self.kill(f"socket error: {exc}")
        except Exception:
            # A bug must cost this connection, never the acceptor.
            logger.exception("FIX connection failed: peer=%s", self.peer)
        finally:
            self._finish()

    def _finish(self) -> None:
        self.kill("closed")
        if self.session is not None:
            with self.session.lock:
                if self.session.connection is self:
                    self.session.connection = None
        if self._pump is not None:
            self._pump.join(timeout=5)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.acceptor.forget(self)

    def _serve(self) -> None:
        first, rest = self._await_logon()
        if first is None or not self._logon(first):
            return
        self.sock.settimeout(SOCKET_TIMEOUT)
        self._pump = threading.Thread(
            target=self._run_pump, name=f"fix-pump-{self.session_id}", daemon=True
        )
        self._pump.start()
        for item in rest:
            self._on_item(item)
        while not self.closed.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.kill("peer closed the connection")
                return
            self.last_received = time.monotonic()
            for item in self._framer.feed(data):
                self._on_item(item)

    def _await_logon(self) -> tuple[Message | None, list[bytes | Garbage]]:
        """The first message of the connection and what arrived behind it."""
        deadline = time.monotonic() + self.acceptor.logon_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill("no Logon in time")
                return None, []
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                self.kill("closed before a Logon")
                return None, []
            self.last_received = time.monotonic()
            items = self._framer.feed(data)
            for index, item in enumerate(items):
                if isinstance(item, Garbage):
                    self._record_garbage(item)
                    continue
                try:
                    return decode(item), items[index + 1 :]
                except DecodeError as exc:
                    self._record_undecodable(exc, item)
                    self.kill("first message undecodable")
                    return None, []

    # --- logon ---

    def _logon(self, message: Message) -> bool:
        """Accept or refuse the first message. True: logged on."""
        acceptor = self.acceptor
        sender = message.get(49) or ""
        if (
            message.msg_type != LOGON
            or message.get(56) != acceptor.comp_id
            or not COMP_ID_RE.fullmatch(sender)
            or message.seq_num is None
        ):
            # FIX.md: a first message that is not a Logon, or unknown CompIDs:
            # the connection is closed without an answer.
            acceptor.count("refused_connections")
            self.kill(
                f"first message {message.msg_type or '?'} from "
                f"{printable(sender.encode('latin-1'), 64)!r} is not a Logon to "
                f"{acceptor.comp_id}"
            )
            return False
        session = acceptor.session(sender)
        self.session = session
        seq = message.seq_num
        with session.lock:
            refusal, epoch, heartbeat = self._logon_refusal(message)
            reset = refusal is None and message.get(141) == "Y"
            if reset:
                session.reset()
            if refusal is None and seq < session.state.next_in:
                refusal = (
                    f"MsgSeqNum too low, expecting {session.state.next_in} "
                    f"but received {seq}"
                )
            if refusal is not None:
                acceptor.count("refused_logons")
                log_event(
                    logger,
                    "fix_logon_refused",
                    logging.WARNING,
                    session=sender,
                    peer=self.peer,
                    reason=refusal,
                )
                # The number is taken only if no connection uses the session:
                # a refused intruder must not open a gap in a live stream.
                self._try_send(LOGOUT, [(58, refusal)], session.connection is None)
                self.kill(f"logon refused: {refusal}")
                return False
            older = session.connection
            if older is not None:
                older.kill("superseded by a newer logon")
            session.connection = self
            self.epoch, self.heartbeat = epoch, heartbeat
            reply: list[tuple[int, object]] = [(98, "0"), (108, heartbeat)]
            if reset:
                reply.append((141, "Y"))
            gap = seq > session.state.next_in
            if not gap:
                session.expect(seq + 1)
            session.send(self, LOGON, reply)
            self._logon_seq = seq
            acceptor.count("logons")
            log_event(
                logger,
                "fix_logon",
                session=sender,
                peer=self.peer,
                epoch=epoch,
                heartbeat=heartbeat,
                seq=seq,
                gap=gap,
                next_out=session.state.next_out,
                reset=reset,
                superseded=older is not None,
            )
            if gap:
                # Accepted first, then asked for the gap (QuickFIX initiators
                # number a Logon per refused connect: docs/FIX.md).
                self._hold(seq, message)
            session.drain_feed(self)
        return True

    def _logon_refusal(self, message: Message) -> tuple[str | None, int, int]:
        """(why the Logon is refused or None, its epoch, its HeartBtInt). The
        epoch is admitted last: a refused Logon never raises it."""
        acceptor = self.acceptor
        if acceptor.faults.fix_refuse_logon():
            return "logon refused (fault injection)", 0, 0
        problem = check(message)
        if problem is not None:
            return f"invalid Logon: {problem.text}", 0, 0
        if not acceptor.credentials_ok(message.get(553), message.get(554)):
            return "invalid credentials", 0, 0
        if message.get(98) != "0":
            return "EncryptMethod(98) must be 0", 0, 0
        heartbeat = int(message.get(108) or "0")
        if heartbeat > MAX_HEARTBEAT:
            return f"HeartBtInt must be 0 to {MAX_HEARTBEAT}", 0, 0
        raw = message.get(96)
        match = None if raw is None else EPOCH_RE.fullmatch(raw)
        if raw is not None and (match is None or int(match[1]) > MAX_EPOCH):
            return "invalid RawData(96): expected epoch=<n>", 0, 0
        epoch = 0 if match is None else int(match[1])
        try:
            acceptor.exchange.logon(self.session_id, epoch)
        except StaleEpoch as exc:
            log_event(
                logger,
                "fix_stale_epoch",
                logging.WARNING,
                session=self.session_id,
                epoch=epoch,
                current=exc.current,
            )
            return "stale epoch", epoch, heartbeat
        return None, epoch, heartbeat

    def _try_send(
        self, msg_type: str, fields: list[tuple[int, object]], consume: bool
    ) -> None:
        assert self.session is not None
        with contextlib.suppress(ConnectionGone):
            self.session.send(self, msg_type, fields, consume=consume)

    # --- receiving ---

    def _on_item(self, item: bytes | Garbage) -> None:
        if isinstance(item, Garbage):
            self._record_garbage(item)
            return
        incoming: Message | DecodeError
        try:
            incoming = decode(item)
        except DecodeError as exc:
            self._record_undecodable(exc, item)
            if exc.seq_num is None:
                return  # nothing to answer: garbage after all
            incoming = exc
        if isinstance(incoming, Message) and _is_application(incoming.msg_type):
            delay = self.acceptor.faults.fix_latency()
            if delay:
                self.acceptor.halt.wait(delay)
        session = self.session
        assert session is not None
        with session.lock:
            if not self._current():
                raise ConnectionGone
            self._receive(incoming)

    def _receive(self, item: Message | DecodeError) -> None:
        session = self.session
        assert session is not None
        seq = item.seq_num
        if seq is None:
            self._logout("MsgSeqNum(34) missing or invalid")
        if (
            isinstance(item, Message)
            and item.msg_type == SEQUENCE_RESET
            and item.get(123) != "Y"
        ):
            self._sequence_reset(item)
            return
        expected = session.state.next_in
        if seq < expected:
            if isinstance(item, Message) and item.poss_dup:
                log_event(
                    logger,
                    "fix_duplicate_ignored",
                    logging.DEBUG,
                    session=session.id,
                    seq=seq,
                    expected=expected,
                )
                return
            self._logout(f"MsgSeqNum too low, expecting {expected} but received {seq}")
        if isinstance(item, Message) and check(item) is None:
            if item.msg_type == LOGOUT:
                self._peer_logout(seq)
            if item.msg_type == RESEND_REQUEST and seq > expected:
                self._answer_resend(item)
                self._answered_resends.add(seq)
        if seq > expected:
            self._hold(seq, item)
            return
        self._process(seq, item)
        self._process_held()

    def _process(self, seq: int, item: Message | DecodeError) -> None:
        """Act on message ``seq`` (the expected one) and expect the next."""
        session = self.session
        assert session is not None
        if isinstance(item, DecodeError):
            self._reject(
                seq,
                item.msg_type,
                FieldError(INVALID_TAG_NUMBER, None, f"unreadable: {item.reason}"),
            )
            session.expect(seq + 1)
            return
        msg_type = item.msg_type
        problem = check(item)
        if problem is not None:
            self._reject(seq, msg_type, problem)
            session.expect(seq + 1)
            return
        if item.get(49) != session.id or item.get(56) != self.acceptor.comp_id:
            self._reject(
                seq, msg_type, FieldError(COMP_ID_PROBLEM, 49, "CompID problem")
            )
            session.expect(seq + 1)
            self._logout("CompID problem")
        if msg_type == SEQUENCE_RESET:  # GapFill (a reset was handled on arrival)
            new_seq = int(item.get(36) or "0")
            if new_seq <= seq:
                self._reject(
                    seq,
                    msg_type,
                    FieldError(
                        VALUE_OUT_OF_RANGE, 36, "NewSeqNo must be above MsgSeqNum"
                    ),
                )
                new_seq = seq + 1
            session.expect(new_seq)
            return
        if _is_application(msg_type):
            self._process_application(seq, item)
            return
        if msg_type == TEST_REQUEST:
            session.send(self, HEARTBEAT, [(112, item.get(112))])
        elif msg_type == RESEND_REQUEST:
            if seq in self._answered_resends:
                self._answered_resends.discard(seq)
            else:
                self._answer_resend(item)
        elif msg_type == REJECT:
            log_event(
                logger,
                "fix_reject_received",
                logging.WARNING,
                session=session.id,
                ref_seq=item.get(45),
                reason=item.get(373),
                text=item.get(58),
            )
        elif msg_type == LOGON and seq != self._logon_seq:
            session.expect(seq + 1)
            self._logout("unexpected Logon on a logged-on session")
        session.expect(seq + 1)

    def _process_application(self, seq: int, message: Message) -> None:
        session = self.session
        assert session is not None
        try:
            self.acceptor.app.handle(self, message)
        except StaleEpoch:
            self._logout("stale epoch")
        except (ConnectionGone, OSError):
            raise
        except Exception:
            # A message that breaks the application is answered and passed
            # over: replayed after a reconnect it would break it again, and
            # stall every message behind it.
            logger.exception(
                "FIX application failed: session=%s seq=%s", session.id, seq
            )
            self.acceptor.count("application_errors")
            session.send(
                self,
                BUSINESS_MESSAGE_REJECT,
                [
                    (45, seq),
                    (372, message.msg_type),
                    (380, "0"),
                    (58, "internal error"),
                ],
            )
        # After the effect: a crash in between replays the message, harmlessly.
        session.expect(seq + 1)
        if self.acceptor.faults.fix_disconnect_due():
            self.kill("fault injection: disconnect after a message")
            raise ConnectionGone
        session.drain_feed(self)

    def _process_held(self) -> None:
        session = self.session
        assert session is not None
        while True:
            expected = session.state.next_in
            for seq in [s for s in self._held if s < expected]:
                del self._held[seq]  # covered by a GapFill
            item = self._held.pop(expected, None)
            if item is None:
                break
            self._process(expected, item)
        if not self._held:
            self._resend_requested_at = None

    def _hold(self, seq: int, item: Message | DecodeError) -> None:
        assert self.session is not None
        if len(self._held) >= MAX_HELD:
            self._logout("too many messages behind a sequence gap")
        self._held[seq] = item
        if self._resend_requested_at is None:
            self._request_resend()

    def _request_resend(self) -> None:
        session = self.session
        assert session is not None
        begin = session.state.next_in
        log_event(
            logger,
            "fix_gap",
            session=session.id,
            expected=begin,
            received=max(self._held),
        )
        session.send(self, RESEND_REQUEST, [(7, begin), (16, 0)])
        self._resend_requested_at = time.monotonic()

    def _sequence_reset(self, message: Message) -> None:
        """SequenceReset without GapFill: the expected number moves forward
        (never back), whatever the message's own number."""
        session = self.session
        assert session is not None
        seq = message.seq_num or 0
        problem = check(message)
        if problem is not None:
            self._reject(seq, SEQUENCE_RESET, problem)
            return
        new_seq = int(message.get(36) or "0")
        expected = session.state.next_in
        log_event(
            logger,
            "fix_sequence_reset",
            logging.WARNING,
            session=session.id,
            expected=expected,
            new_seq=new_seq,
        )
        if new_seq < expected:
            self._reject(
                seq,
                SEQUENCE_RESET,
                FieldError(
                    VALUE_OUT_OF_RANGE, 36, f"NewSeqNo {new_seq} below {expected}"
                ),
            )
            return
        session.expect(new_seq)
        self._process_held()

    def _answer_resend(self, message: Message) -> None:
        assert self.session is not None
        begin = int(message.get(7) or "0")
        end = int(message.get(16) or "0")
        self.session.resend(self, begin, end)

    def _peer_logout(self, seq: int) -> None:
        session = self.session
        assert session is not None
        if seq == session.state.next_in:
            session.expect(seq + 1)
        if not self._logging_out:
            self._try_send(LOGOUT, [], True)
        self.kill("peer logged out")
        raise ConnectionGone

    def _logout(self, text: str) -> None:
        """Send a Logout saying why, disconnect, unwind."""
        log_event(
            logger,
            "fix_logout",
            logging.WARNING,
            session=self.session_id,
            reason=text,
        )
        self._try_send(LOGOUT, [(58, text)], True)
        self.kill(text)
        raise ConnectionGone

    def _reject(self, seq: int, msg_type: str | None, problem: FieldError) -> None:
        self.acceptor.count("session_rejects")
        log_event(
            logger,
            "fix_reject",
            logging.WARNING,
            session=self.session_id,
            ref_seq=seq,
            msg_type=msg_type,
            tag=problem.tag,
            reason=problem.reason,
            text=problem.text,
        )
        assert self.session is not None
        self.session.send(
            self,
            REJECT,
            [
                (45, seq),
                (371, problem.tag),
                (372, msg_type or None),
                (373, problem.reason),
                (58, problem.text),
            ],
        )

    def _record_garbage(self, garbage: Garbage) -> None:
        self.acceptor.count("garbled_frames")
        log_event(
            logger,
            "fix_garbage",
            logging.WARNING,
            session=None if self.session is None else self.session.id,
            peer=self.peer,
            reason=garbage.reason,
            size=len(garbage.data),
            data=printable(garbage.data),
        )

    def _record_undecodable(self, error: DecodeError, frame: bytes) -> None:
        self.acceptor.count("undecodable_frames")
        log_event(
            logger,
            "fix_undecodable",
            logging.WARNING,
            session=None if self.session is None else self.session.id,
            peer=self.peer,
            reason=error.reason,
            seq=error.seq_num,
            data=printable(frame),
        )

    # --- the pump: feed reports and timers ---

    def _run_pump(self) -> None:
        session = self.session
        assert session is not None
        feed = self.acceptor.exchange.feed
        try:
            while not self.closed.is_set() and not self.acceptor.halt.is_set():
                reports = feed.read(
                    session.id,
                    session.state.feed_cursor,
                    PUMP_BATCH,
                    self._timer_wait(),
                )
                with session.lock:
                    if not self._current():
                        return
                    session.send_reports(self, reports)
                    self._check_timers()
        except ConnectionGone:
            pass
        except Exception:
            logger.exception("FIX pump failed: session=%s", session.id)
            self.kill("internal error")

    def _timer_wait(self) -> float:
        if not self.heartbeat:
            return MAX_TIMER_WAIT
        deadlines = [self.last_sent + self.heartbeat]
        if self._test_request_sent_at is None:
            deadlines.append(self.last_received + self.heartbeat * TEST_REQUEST_FACTOR)
        else:
            deadlines.append(self._test_request_sent_at + self.heartbeat)
        if self._resend_requested_at is not None:
            deadlines.append(self._resend_requested_at + self.heartbeat)
        wait = min(deadlines) - time.monotonic()
        return min(max(wait, 0.01), MAX_TIMER_WAIT)

    def _check_timers(self) -> None:
        """Heartbeat after HeartBtInt without sending; TestRequest after
        HeartBtInt + 20 % without receiving; disconnect when that gets no
        answer within another HeartBtInt. Also asks again for a gap that a
        ResendRequest has not filled within a HeartBtInt."""
        heartbeat = self.heartbeat
        if not heartbeat:
            return
        session = self.session
        assert session is not None
        now = time.monotonic()
        sent_at = self._test_request_sent_at
        if sent_at is not None and self.last_received > sent_at:
            self._test_request_sent_at = sent_at = None
        if sent_at is not None and now - sent_at >= heartbeat:
            log_event(
                logger, "fix_heartbeat_timeout", logging.WARNING, session=session.id
            )
            self.kill("no answer to a TestRequest")
            raise ConnectionGone
        silence = now - self.last_received
        if sent_at is None and silence >= heartbeat * TEST_REQUEST_FACTOR:
            self._test_requests += 1
            session.send(self, TEST_REQUEST, [(112, f"TEST-{self._test_requests}")])
            self._test_request_sent_at = now
        if (
            self._resend_requested_at is not None
            and now - self._resend_requested_at >= heartbeat
        ):
            self._request_resend()
        if now - self.last_sent >= heartbeat:
            session.send(self, HEARTBEAT, [])


def _is_application(msg_type: str) -> bool:
    """Anything that is not a session message (D, F, H, and the MsgTypes the
    application answers with a BusinessMessageReject)."""
    return msg_type not in ADMIN_TYPES
