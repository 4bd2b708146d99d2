"""The FIX initiator's session layer against a scripted acceptor: numbering from
PostgreSQL under the fence, the journal and resends, gaps, duplicates, too-low
numbers, garbage, heartbeats and test requests, and failover between leaders."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from broker.models import FixJournal, FixSession, QuarantinedMessage
from devstack.wait import wait_until
from executor.fencing import Fence, Fenced, topic_leader_claim
from executor.fix import state as fix_state
from executor.fix.codec import Message, MsgType, Tag, encode
from executor.fix.session import RESEND_PATIENCE_SECONDS, Outgoing, SessionConfig
from executor.fix.session import FixSession as Session
from tests.executor.fix.acceptor import ScriptedAcceptor

pytestmark = pytest.mark.django_db(transaction=True)

TOPIC = "fixtest.trades.0"
SENDER = "BROKER-0"


@pytest.fixture
def acceptor() -> Iterator[ScriptedAcceptor]:
    venue = ScriptedAcceptor(SENDER)
    yield venue
    venue.close()


class Running:
    """A session in its own thread, as a leader runs it, recording what it
    books."""

    def __init__(
        self, acceptor: ScriptedAcceptor, epoch: int, heartbeat: int = 30
    ) -> None:
        topic_leader_claim(topic=TOPIC, epoch=epoch, holder=f"leader-{epoch}")
        self.fence = Fence(topic=TOPIC, epoch=epoch, still_leader=lambda: True)
        self.booked: list[Message] = []
        self.follow_ups: list[Outgoing] = []
        self.stop = threading.Event()
        self.lost = threading.Event()
        self.session = Session(
            config=SessionConfig(
                sender_comp_id=SENDER,
                target_comp_id="EXCHANGE",
                host="127.0.0.1",
                port=acceptor.port,
                heartbeat_seconds=heartbeat,
                username="broker",
                password="secret",
            ),
            topic=TOPIC,
            fence=self.fence,
            on_app=self._book,
            stop=self.stop,
            lost=self.lost,
        )
        self.thread = threading.Thread(target=self.session.run, daemon=True)
        self.thread.start()

    def _book(self, messages: list[Message]) -> list[Outgoing]:
        self.booked.extend(messages)
        follow, self.follow_ups = self.follow_ups, []
        return follow

    def booked_seqs(self) -> list[int]:
        return [m.seq for m in self.booked]

    def send_orders(self, count: int) -> None:
        with self.session.sending() as outbox:
            for n in range(count):
                outbox.add(MsgType.NEW_ORDER_SINGLE, [(Tag.CL_ORD_ID, f"order-{n}")])

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def running(acceptor):
    started: list[Running] = []

    def start(epoch: int = 100, heartbeat: int = 30) -> Running:
        session = Running(acceptor, epoch, heartbeat)
        started.append(session)
        return session

    yield start
    for session in started:
        session.finish()


def logged_on(acceptor: ScriptedAcceptor, running_session: Running, **kw) -> Message:
    logon = acceptor.wait_type(MsgType.LOGON)
    acceptor.logon(**kw)
    assert running_session.session.wait_logged_on(10)
    return logon


def state() -> FixSession:
    return FixSession.objects.get(sender_comp_id=SENDER)


def test_logon_carries_the_epoch_credentials_and_the_stored_number(acceptor, running):
    leader = running(epoch=4242)
    logon = logged_on(acceptor, leader)
    assert logon.seq == 1
    assert logon.get(Tag.RAW_DATA) == "epoch=4242"
    assert logon.get(Tag.RAW_DATA_LENGTH) == str(len("epoch=4242"))
    assert (logon.get(Tag.USERNAME), logon.get(Tag.PASSWORD)) == ("broker", "secret")
    assert logon.get(Tag.HEART_BT_INT) == "30"
    assert logon.get(Tag.RESET_SEQ_NUM_FLAG) is None
    assert state().next_out_seq == 2


def test_orders_are_numbered_and_journaled_before_they_are_sent(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    leader.send_orders(3)
    orders = [acceptor.wait_type(MsgType.NEW_ORDER_SINGLE, after=n) for n in (1, 2, 3)]
    assert [o.seq for o in orders] == [2, 3, 4]
    journal = list(FixJournal.objects.filter(session=SENDER).order_by("seq"))
    assert [(j.seq, j.msg_type) for j in journal] == [(2, "D"), (3, "D"), (4, "D")]
    assert [o.get(Tag.SENDING_TIME) for o in orders] == [
        j.sending_time for j in journal
    ]
    assert state().next_out_seq == 5


def test_reports_are_booked_in_order_with_the_expected_number(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    for n in range(3):
        acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, f"order-{n}")])
    wait_until(lambda: len(leader.booked) == 3, timeout=10, what="3 reports booked")
    assert leader.booked_seqs() == [2, 3, 4]
    wait_until(lambda: state().next_in_seq == 5, timeout=5, what="next_in stored")


def test_a_gap_is_asked_for_again_and_filled_in_order(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "a")])  # 2
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "c")], seq=4)  # gap
    request = acceptor.wait_type(MsgType.RESEND_REQUEST)
    assert (request.get(Tag.BEGIN_SEQ_NO), request.get(Tag.END_SEQ_NO)) == ("3", "0")
    assert leader.booked_seqs() == [2]  # 4 is held until 3 arrives
    acceptor.send(
        MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "b")], seq=3, poss_dup=True
    )
    acceptor.send(
        MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "c")], seq=4, poss_dup=True
    )
    wait_until(lambda: len(leader.booked) == 3, timeout=10, what="gap filled")
    assert leader.booked_seqs() == [2, 3, 4]
    assert [m.get(Tag.CL_ORD_ID) for m in leader.booked] == ["a", "b", "c"]


def test_one_resend_request_covers_every_message_above_the_gap(acceptor, running):
    """A ResendRequest to infinity covers what arrives while it is answered:
    asking again for each later message would make the venue resend the whole
    range once per message."""
    leader = running()
    logged_on(acceptor, leader)
    for seq in range(3, 23):  # 2 is missing
        acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, f"o{seq}")], seq=seq)
    acceptor.wait_type(MsgType.RESEND_REQUEST)
    acceptor.send(
        MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "o2")], seq=2, poss_dup=True
    )
    wait_until(lambda: len(leader.booked) == 21, timeout=10, what="gap filled")
    assert leader.booked_seqs() == list(range(2, 23))
    assert len(acceptor.of_type(MsgType.RESEND_REQUEST)) == 1


def test_a_resend_request_left_unanswered_is_asked_again(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "x")], seq=3)
    first = acceptor.wait_type(MsgType.RESEND_REQUEST)
    again = acceptor.wait_type(
        MsgType.RESEND_REQUEST, after=first.seq, timeout=RESEND_PATIENCE_SECONDS + 5
    )
    assert again.get(Tag.BEGIN_SEQ_NO) == first.get(Tag.BEGIN_SEQ_NO) == "2"
    assert leader.booked_seqs() == []  # 3 is still held, not booked out of order


def test_a_gap_fill_moves_the_expected_number_forward(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "x")], seq=5)
    acceptor.wait_type(MsgType.RESEND_REQUEST)
    acceptor.send(
        MsgType.SEQUENCE_RESET,
        [(Tag.GAP_FILL_FLAG, "Y"), (Tag.NEW_SEQ_NO, 5)],
        seq=2,
        poss_dup=True,
    )
    wait_until(lambda: leader.booked_seqs() == [5], timeout=10, what="5 after fill")


def test_a_duplicate_below_the_expected_number_changes_nothing(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "a")])  # 2
    wait_until(lambda: len(leader.booked) == 1, timeout=10, what="one booked")
    acceptor.send(
        MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "a")], seq=2, poss_dup=True
    )
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "b")])  # 3
    wait_until(lambda: len(leader.booked) == 2, timeout=10, what="the next one")
    assert leader.booked_seqs() == [2, 3]


def test_too_low_without_possdup_logs_out_and_disconnects(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send(MsgType.HEARTBEAT)  # 2
    acceptor.send(MsgType.HEARTBEAT)  # 3
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "old")], seq=2)
    logout = acceptor.wait_type(MsgType.LOGOUT)
    assert "MsgSeqNum too low, expecting 4 but received 2" in logout.get(Tag.TEXT)
    acceptor.wait_connected(2)  # it reconnects, with backoff
    assert leader.booked == []


def test_the_journal_answers_a_resend_request(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    leader.send_orders(2)  # 2, 3
    acceptor.wait_type(MsgType.NEW_ORDER_SINGLE, after=2)
    acceptor.send(MsgType.TEST_REQUEST, [(Tag.TEST_REQ_ID, "t1")])
    acceptor.wait_for(lambda m: m.get(Tag.TEST_REQ_ID) == "t1", "heartbeat t1")  # 4
    acceptor.send(MsgType.RESEND_REQUEST, [(Tag.BEGIN_SEQ_NO, 1), (Tag.END_SEQ_NO, 0)])
    resent = acceptor.wait_for(
        lambda m: m.poss_dup and m.msg_type == MsgType.SEQUENCE_RESET and m.seq == 4,
        "the gap fill over the heartbeat",
    )
    assert resent.get(Tag.NEW_SEQ_NO) == "5"
    dups = [m for m in acceptor.received if m.poss_dup]
    assert [(m.seq, m.msg_type) for m in dups] == [
        (1, MsgType.SEQUENCE_RESET),
        (2, MsgType.NEW_ORDER_SINGLE),
        (3, MsgType.NEW_ORDER_SINGLE),
        (4, MsgType.SEQUENCE_RESET),
    ]
    originals = acceptor.of_type(MsgType.NEW_ORDER_SINGLE)[:2]
    for original, again in zip(originals, dups[1:3], strict=True):
        assert again.get(Tag.ORIG_SENDING_TIME) == original.get(Tag.SENDING_TIME)
        assert again.get(Tag.CL_ORD_ID) == original.get(Tag.CL_ORD_ID)


def test_garbage_is_quarantined_and_the_session_goes_on(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send_raw(b"8=FIX.4.4\x019=5\x0135=8\x0110=000\x01")
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "after")])
    wait_until(lambda: len(leader.booked) == 1, timeout=10, what="the next report")
    record = QuarantinedMessage.objects.get(session=SENDER)
    assert record.reason.startswith("garbled")
    assert "35=8" in record.raw


def test_silence_brings_a_test_request_and_then_a_reconnect(acceptor, running):
    leader = running(heartbeat=1)
    logged_on(acceptor, leader, heartbeat=1)
    request = acceptor.wait_type(MsgType.TEST_REQUEST, timeout=5)
    assert request.get(Tag.TEST_REQ_ID)
    acceptor.wait_connected(2, timeout=10)


def test_a_test_request_is_answered(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    acceptor.send(MsgType.TEST_REQUEST, [(Tag.TEST_REQ_ID, "ping-7")])
    answer = acceptor.wait_for(
        lambda m: m.msg_type == MsgType.HEARTBEAT and m.get(Tag.TEST_REQ_ID), "answer"
    )
    assert answer.get(Tag.TEST_REQ_ID) == "ping-7"


def test_a_stale_epoch_logout_ends_the_leadership(acceptor, running):
    leader = running()
    acceptor.wait_type(MsgType.LOGON)
    acceptor.send(MsgType.LOGOUT, [(Tag.TEXT, "stale epoch: 99 < 100")])
    assert leader.lost.wait(10)


def test_a_deposed_leader_cannot_number_a_message(acceptor, running):
    leader = running(epoch=100)
    logged_on(acceptor, leader)
    topic_leader_claim(topic=TOPIC, epoch=101, holder="successor")
    with pytest.raises(Fenced):
        leader.send_orders(1)
    assert acceptor.of_type(MsgType.NEW_ORDER_SINGLE) == []
    assert not FixJournal.objects.filter(session=SENDER).exists()


def test_a_successor_continues_the_numbers_and_resends_what_never_left(
    acceptor, running
):
    first = running(epoch=100)
    logged_on(acceptor, first)
    first.send_orders(1)  # 2, delivered
    acceptor.wait_type(MsgType.NEW_ORDER_SINGLE)
    acceptor.send(MsgType.EXECUTION_REPORT, [(Tag.CL_ORD_ID, "order-0")])  # 2
    wait_until(lambda: len(first.booked) == 1, timeout=10, what="booked")
    first.finish()
    # The old leader journaled two orders and died before writing them.
    acceptor.drop_connection()
    with first.fence.transaction():
        seq = fix_state.seq_allocate(sender_comp_id=SENDER, count=2)
        fix_state.journal_write(
            sender_comp_id=SENDER,
            entries=[
                fix_state.JournalEntry(
                    seq + n, "D", f"11=lost-{n}", "20260101-00:00:00"
                )
                for n in range(2)
            ],
        )
    received_before = len(acceptor.received)

    second = running(epoch=200)
    logon = acceptor.wait_for(
        lambda m: (
            m.msg_type == MsgType.LOGON
            and acceptor.received.index(m) >= received_before
        ),
        "the successor's logon",
    )
    assert logon.get(Tag.RAW_DATA) == "epoch=200"
    expected_from_us = logon.seq
    assert expected_from_us > seq + 1  # numbering continued, never reset
    acceptor.logon()
    assert second.session.wait_logged_on(10)
    # The acceptor had seen up to the first leader's order: it asks for the rest.
    acceptor.send(
        MsgType.RESEND_REQUEST, [(Tag.BEGIN_SEQ_NO, seq), (Tag.END_SEQ_NO, 0)]
    )
    resent = acceptor.wait_for(
        lambda m: m.poss_dup and m.get(Tag.CL_ORD_ID) == "lost-1", "lost-1 resent"
    )
    assert resent.seq == seq + 1
    # It went on from the acceptor's numbers (logon 3, resend request 4):
    # nothing the first leader booked is asked for again.
    wait_until(lambda: state().next_in_seq == 5, timeout=10, what="next_in 5")
    assert not [m for m in acceptor.received if m.msg_type == MsgType.RESEND_REQUEST]
    assert first.booked_seqs() == [2] and second.booked == []


def test_orders_numbered_while_the_logon_is_on_its_way_go_out_at_logon(
    acceptor, running
):
    """The leader journals orders before the acceptor answered the Logon: they
    go out as soon as it does, in order, without waiting for the acceptor to
    notice a gap."""
    leader = running()
    acceptor.wait_type(MsgType.LOGON)
    leader.send_orders(2)  # numbered 2 and 3, not written yet
    assert acceptor.of_type(MsgType.NEW_ORDER_SINGLE) == []
    acceptor.logon()
    orders = [acceptor.wait_type(MsgType.NEW_ORDER_SINGLE, after=n) for n in (1, 2)]
    # Originals, unasked: the scripted acceptor never asks for a resend.
    assert [(o.seq, o.poss_dup) for o in orders] == [(2, False), (3, False)]


def _frame(acceptor: ScriptedAcceptor, msg_type: str, body, seq: int) -> bytes:
    return encode(
        msg_type=msg_type,
        sender="EXCHANGE",
        target=acceptor.initiator,
        seq=seq,
        body=body,
    )


def test_what_arrives_with_the_logon_answer_is_served_too(acceptor, running):
    """The acceptor writes its Logon and a ResendRequest in one segment (it saw
    our numbers jump): the request behind the Logon must be answered, not
    dropped with the rest of that read."""
    leader = running()
    logon = acceptor.wait_type(MsgType.LOGON)
    acceptor.send_raw(
        _frame(
            acceptor,
            MsgType.LOGON,
            [(Tag.ENCRYPT_METHOD, 0), (Tag.HEART_BT_INT, 30)],
            1,
        )
        + _frame(
            acceptor,
            MsgType.RESEND_REQUEST,
            [(Tag.BEGIN_SEQ_NO, 1), (Tag.END_SEQ_NO, 0)],
            2,
        )
    )
    acceptor.next_out = 3
    assert leader.session.wait_logged_on(10)
    fill = acceptor.wait_for(
        lambda m: m.msg_type == MsgType.SEQUENCE_RESET and m.poss_dup,
        "the gap fill answering the request",
    )
    assert (fill.seq, fill.get(Tag.NEW_SEQ_NO)) == (1, str(logon.seq + 1))


def test_a_resend_request_above_a_gap_is_answered_at_once(acceptor, running):
    leader = running()
    logged_on(acceptor, leader)
    leader.send_orders(1)  # 2
    acceptor.wait_type(MsgType.NEW_ORDER_SINGLE)
    # Its 2 never reaches us; its ResendRequest (3) does, above the gap.
    acceptor.send(
        MsgType.RESEND_REQUEST, [(Tag.BEGIN_SEQ_NO, 2), (Tag.END_SEQ_NO, 0)], seq=3
    )
    again = acceptor.wait_for(
        lambda m: m.poss_dup and m.msg_type == MsgType.NEW_ORDER_SINGLE,
        "the order resent before the gap is filled",
    )
    assert again.seq == 2
    ours = acceptor.wait_type(MsgType.RESEND_REQUEST)
    assert ours.get(Tag.BEGIN_SEQ_NO) == "2"
