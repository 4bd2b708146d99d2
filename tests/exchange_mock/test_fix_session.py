"""The acceptor's session layer over real sockets (in-process exchange, SQLite
file): logon and its refusals, epoch fencing, sequence numbers and gaps,
resends from the journal across a restart, heartbeats, garbage."""

from __future__ import annotations

import time

import pytest

from exchange_mock.fixcodec import garble
from tests.exchange_mock.fixvenue import Venue

CANCEL_TIME = "20240506-12:00:00"


def test_logon_answers_with_logon_and_test_request_with_heartbeat(fix_venue):
    client = fix_venue.client()
    reply = client.logon(heartbeat=30)
    assert (reply.seq, reply.get(49), reply.get(56)) == (1, "EXCHANGE", "BROKER-0")
    assert (reply.get(98), reply.get(108)) == ("0", "30")
    client.send("1", [(112, "ping")])
    heartbeat = client.expect("0")
    assert heartbeat.get(112) == "ping"
    client.send("5", [])
    assert client.expect("5")
    assert client.closed_by_peer()
    assert fix_venue.session_state().next_in == 4


@pytest.mark.parametrize(
    "first",
    [
        ("0", "EXCHANGE"),  # not a Logon
        ("A", "ELSEWHERE"),  # unknown TargetCompID
    ],
)
def test_first_message_not_a_logon_to_us_closes_without_answer(fix_venue, first):
    msg_type, target = first
    client = fix_venue.client(target=target)
    client.send(msg_type, [(98, 0), (108, 30)])
    assert client.closed_by_peer()
    assert client.received == []


def test_garbage_before_the_logon_is_dropped(fix_venue):
    client = fix_venue.client()
    client.send_raw(b"\x00\x01garbage")
    assert client.logon().type == "A"
    assert fix_venue.acceptor.stats()["events"]["garbled_frames"] == 1


def test_invalid_credentials_get_a_logout(tmp_path):
    fix_venue = Venue(tmp_path / "x.db", username="broker", password="s3cret")
    try:
        refused = fix_venue.client()
        refused.logon(username="broker", password="wrong", expect=False)
        logout = refused.expect("5")
        assert logout.get(58) == "invalid credentials"
        assert refused.closed_by_peer()
        accepted = fix_venue.client()
        assert accepted.logon(username="broker", password="s3cret", seq=1).type == "A"
    finally:
        fix_venue.stop()


def test_stale_epoch_is_refused_and_a_newer_one_supersedes(fix_venue):
    old = fix_venue.client()
    old.logon(epoch=5)
    older = fix_venue.client()
    older.next_out = old.next_out
    older.logon(epoch=4, expect=False)
    assert older.expect("5").get(58) == "stale epoch"
    assert older.closed_by_peer()

    newer = fix_venue.client()
    newer.next_out = old.next_out
    assert newer.logon(epoch=6).type == "A"
    # The older connection is cut at once (no Logout into the new stream).
    assert old.closed_by_peer()
    newer.send("1", [(112, "t")])
    assert newer.expect("0").get(112) == "t"
    assert fix_venue.exchange.epochs.current("BROKER-0") == 6


def test_a_logon_without_epoch_counts_as_epoch_zero(fix_venue):
    plain = fix_venue.client()
    assert plain.logon().type == "A"
    assert fix_venue.exchange.epochs.current("BROKER-0") == 0
    fenced = fix_venue.client()
    fenced.next_out = plain.next_out
    fenced.logon(epoch=1)
    assert plain.closed_by_peer()
    again = fix_venue.client()
    again.next_out = fenced.next_out
    again.logon(expect=False)
    assert again.expect("5").get(58) == "stale epoch"


def test_logon_above_the_expected_number_is_accepted_then_asked_for(fix_venue):
    client = fix_venue.client()
    client.logon(seq=4)
    client.next_out = 5
    resend = client.expect("2")
    assert (resend.get(7), resend.get(16)) == ("1", "0")
    # A message behind the gap waits for it.
    client.order("held-1")
    assert client.receive(0.3) is None
    client.send("4", [(123, "Y"), (36, 5)], seq=1, poss_dup=True)
    report = client.expect("8")
    assert report.get(11) == "held-1"
    assert fix_venue.session_state().next_in == 6


def test_gap_holds_later_messages_until_resent(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.next_out = 3  # number 2 is lost on the way
    client.order("gap-2", price="100.00")
    resend = client.expect("2")
    assert (resend.get(7), resend.get(16)) == ("2", "0")
    assert client.receive(0.3) is None  # gap-2 is not processed yet
    assert fix_venue.exchange.get_order("gap-2") is None
    # The lost one comes again, as a retransmission; then the held one runs.
    client.order("gap-1", price="100.00", seq=2, poss_dup=True)
    first, second = client.collect(2)
    assert [first.get(11), second.get(11)] == ["gap-1", "gap-2"]
    assert fix_venue.session_state().next_in == 4


def test_too_low_without_poss_dup_logs_out(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.send("0", [])
    client.send("0", [], seq=2)
    logout = client.expect("5")
    assert logout.get(58) == "MsgSeqNum too low, expecting 3 but received 2"
    assert client.closed_by_peer()


def test_too_low_with_poss_dup_is_passed_over(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.order("dup-1", price="100.00")
    client.expect("8")
    client.order("dup-1", price="100.00", seq=2, poss_dup=True)
    client.send("1", [(112, "after")])
    assert client.expect("0").get(112) == "after"
    assert len(fix_venue.exchange.list_orders()) == 1


def test_resend_after_a_restart_comes_from_the_journal(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.order("r-1", price="100.00")
    new = client.expect("8")
    client.send("1", [(112, "t")])
    client.expect("0")
    client.close()

    fix_venue.restart()
    again = fix_venue.client()
    again.next_out = client.next_out
    logon = again.logon()
    assert logon.seq == 4  # numbers survive the restart
    again.send("2", [(7, 1), (16, 0)])
    gap_fill, report, gap_fill_2 = again.collect(3)
    assert (gap_fill.type, gap_fill.seq, gap_fill.get(36)) == ("4", 1, "2")
    assert gap_fill.get(123) == "Y" and gap_fill.get(43) == "Y"
    assert report.type == "8" and report.seq == 2
    assert report.get(43) == "Y" and report.get(122) == new.get(52)
    assert report.get(17) == new.get(17)
    assert (gap_fill_2.type, gap_fill_2.seq, gap_fill_2.get(36)) == ("4", 3, "5")


def test_reports_made_while_disconnected_follow_the_next_logon(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.order("away-1", price="189.00")
    client.expect("8")
    client.send("5", [])
    client.expect("5")
    fix_venue.wait_logged_off()
    fix_venue.set_quote("188.00")  # fills the resting buy while nobody listens
    again = fix_venue.client()
    again.next_out = client.next_out
    again.logon()
    fill = again.expect("8")
    assert (fill.get(11), fill.get(150), fill.get(39)) == ("away-1", "F", "2")


def test_reset_seq_num_flag_restarts_both_sides_at_one(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.send("0", [])
    client.send("5", [])
    client.expect("5")
    fix_venue.wait_logged_off()
    again = fix_venue.client()
    reply = again.logon(reset=True, seq=1)
    assert (reply.seq, reply.get(141)) == (1, "Y")
    state = fix_venue.session_state()
    assert (state.next_out, state.next_in) == (2, 2)


def test_sequence_reset_moves_the_expected_number_forward_only(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.send("4", [(36, 10)], seq=99)  # without GapFill: its own number aside
    client.next_out = 10
    client.send("1", [(112, "t")])
    assert client.expect("0").get(112) == "t"
    client.send("4", [(36, 3)])
    reject = client.expect("3")
    assert (reject.get(371), reject.get(373)) == ("36", "5")
    assert fix_venue.session_state().next_in == 11


def test_invalid_message_gets_a_reject_and_the_session_goes_on(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.send(
        "D", [(11, "bad-1"), (55, "AAPL"), (54, "1"), (38, "10"), (40, "1")]
    )  # no TransactTime
    reject = client.expect("3")
    assert (reject.get(45), reject.get(371), reject.get(372)) == ("2", "60", "D")
    assert reject.get(373) == "1"
    client.order("bad-2", side="Z")
    reject = client.expect("3")
    assert (reject.get(371), reject.get(373)) == ("54", "5")
    client.order("good-1", price="100.00")
    assert client.expect("8").get(11) == "good-1"


def test_garbled_incoming_frame_is_dropped_and_recovered_by_resend(fix_venue):
    client = fix_venue.client()
    client.logon()
    garbled = client.build("D", [(11, "g-1"), (55, "AAPL")], seq=2)
    client.send_raw(garble(garbled))
    client.next_out = 3
    client.send("0", [])
    resend = client.expect("2")
    assert resend.get(7) == "2"
    client.order("g-1", price="100.00", seq=2, poss_dup=True)
    assert client.expect("8").get(11) == "g-1"
    assert fix_venue.acceptor.stats()["events"]["garbled_frames"] == 1


def test_unsupported_message_type_gets_a_business_reject(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.send("G", [(11, "x"), (41, "y")])
    reject = client.expect("j")
    assert (reject.get(45), reject.get(372), reject.get(380)) == ("2", "G", "3")


def test_a_message_that_breaks_the_application_is_passed_over(fix_venue):
    handle = fix_venue.acceptor.app.handle

    def breaks_on_poison(link, message):
        if message.get(11) == "poison":
            raise RuntimeError("a bug")
        handle(link, message)

    fix_venue.acceptor.app.handle = breaks_on_poison
    client = fix_venue.client()
    client.logon()
    client.order("poison", price="100.00")
    reject = client.expect("j")
    assert (reject.get(45), reject.get(380)) == ("2", "0")
    client.order("after-poison", price="100.00")
    assert client.expect("8").get(11) == "after-poison"


def test_silence_gets_a_test_request_then_a_disconnect(fix_venue):
    client = fix_venue.client()
    started = time.monotonic()
    client.logon(heartbeat=1)
    # HeartBtInt 1: Heartbeat at 1 s, TestRequest at 1.2 s, cut at 2.2 s (the
    # lower bounds are the rules; the upper ones leave room for a slow machine).
    heartbeat = client.expect("0", skip=())
    assert 0.9 <= time.monotonic() - started <= 2.0
    test_request = client.expect("1")
    assert test_request.get(112)
    assert 1.1 <= time.monotonic() - started <= 2.5
    assert client.closed_by_peer(timeout=3)
    assert 2.1 <= time.monotonic() - started <= 4.0
    assert heartbeat.get(112) is None


def test_answered_test_request_keeps_the_session(fix_venue):
    client = fix_venue.client()
    client.logon(heartbeat=1)
    test_request = client.expect("1", timeout=3)
    client.send("0", [(112, test_request.get(112))])
    client.send("1", [(112, "still-here")])
    assert client.expect("0").get(112) == "still-here"


def test_stop_logs_every_session_out(tmp_path):
    fix_venue = Venue(tmp_path / "x.db")
    client = fix_venue.client()
    client.logon()
    fix_venue.stop()
    logout = client.expect("5")
    assert logout.get(58) == "exchange stopping"
    assert client.closed_by_peer()


def test_cancel_of_a_terminal_order_says_too_late(fix_venue):
    client = fix_venue.client()
    client.logon()
    client.order("t-1")  # market: fills at once
    client.expect("8")
    client.send(
        "F",
        [(11, "t-1:C"), (41, "t-1"), (55, "AAPL"), (54, "1"), (60, CANCEL_TIME)],
    )
    reject = client.expect("9")
    assert (reject.get(102), reject.get(39), reject.get(434)) == ("0", "2", "1")
