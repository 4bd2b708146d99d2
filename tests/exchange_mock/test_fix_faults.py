"""Faults injected into the FIX link for real: connections cut, messages
delayed, reports duplicated, garbled or withheld, logons refused, fills
misreported — each recoverable the standard way, each counted."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from exchange_mock.faults import FaultConfig, FaultConfigError


def test_fix_fields_parse_and_serialise():
    config = FaultConfig.parse(
        {
            "fix_disconnect_after": 3,
            "fix_latency_ms": 50,
            "fix_duplicate_rate": "0.5",
            "fix_garble_rate": Decimal("0.25"),
            "fix_withhold_rate": 1,
            "fix_refuse_logons": True,
            "fix_fill_outside_limit": "1.50",
        }
    )
    assert config.fix_fill_outside_limit == Decimal("1.50")
    as_json = config.to_json()
    assert as_json["fix_fill_outside_limit"] == "1.50"
    assert as_json["fix_garble_rate"] == 0.25
    assert (
        FaultConfig.parse({"fix_fill_outside_limit": "0"}).fix_fill_outside_limit
        is None
    )


@pytest.mark.parametrize(
    "body",
    [
        {"fix_disconnect_after": -1},
        {"fix_disconnect_after": True},
        {"fix_latency_ms": 60001},
        {"fix_garble_rate": 2},
        {"fix_refuse_logons": "yes"},
        {"fix_fill_outside_limit": "-1"},
        {"fix_fill_outside_limit": "0.00001"},
        {"fix_fill_outside_limit": "NaN"},
        {"fix_fill_outside_limit": []},
    ],
)
def test_fix_fields_refuse_bad_values(body):
    with pytest.raises(FaultConfigError):
        FaultConfig.parse(body)


def logged_on(fix_venue):
    client = fix_venue.client()
    client.logon()
    return client


def test_disconnect_after_n_messages_keeps_the_reports_for_the_next_logon(fix_venue):
    fix_venue.set_faults(fix_disconnect_after=2)
    client = logged_on(fix_venue)
    client.order("cut-1", price="100.00")
    assert client.expect("8").get(11) == "cut-1"
    client.order("cut-2", price="100.00")  # processed, then the cut
    assert client.closed_by_peer()
    assert [m.type for m in client.received] == ["A", "8"]
    assert fix_venue.exchange.get_order("cut-2") is not None
    fix_venue.wait_logged_off()
    again = fix_venue.client()
    again.next_out = client.next_out
    again.logon()
    assert again.expect("8").get(11) == "cut-2"  # its report, after the logon
    assert fix_venue.counters()["fix_disconnects"] == 1


def test_latency_delays_application_messages_only(fix_venue):
    fix_venue.set_faults(fix_latency_ms=500)
    client = logged_on(fix_venue)
    started = time.monotonic()
    client.send("1", [(112, "fast")])
    client.expect("0")
    assert time.monotonic() - started < 0.4
    started = time.monotonic()
    client.order("slow-1", price="100.00")
    client.expect("8")
    assert time.monotonic() - started >= 0.5
    assert fix_venue.counters()["fix_delayed"] == 1


def test_duplicate_report_is_a_retransmission_with_poss_dup(fix_venue):
    fix_venue.set_faults(fix_duplicate_rate=1)
    client = logged_on(fix_venue)
    client.order("twice-1", price="100.00")
    first, second = client.collect(2)
    assert first.seq == second.seq
    assert first.get(43) is None
    assert (second.get(43), second.get(122)) == ("Y", first.get(52))
    assert second.get(17) == first.get(17)
    assert fix_venue.counters()["fix_duplicated_reports"] == 1


def test_duplicate_reports_are_two_messages_with_one_exec_id(fix_venue):
    """The feed-level fault: each report appended twice, so the broker sees two
    ExecutionReports (two MsgSeqNums, no PossDupFlag) of one execution."""
    fix_venue.set_faults(duplicate_reports=True)
    client = logged_on(fix_venue)
    client.order("twice-2")  # a market buy: filled at once
    first, second = client.collect(2)
    assert (first.get(150), second.get(150)) == ("F", "F")
    assert second.seq == first.seq + 1
    assert second.get(43) is None
    assert second.get(17) == first.get(17) == "EX-000001-1"
    assert len(fix_venue.exchange.get_order("twice-2").executions) == 1
    assert fix_venue.counters()["duplicated_reports"] == 1


def test_garbled_report_fails_its_checksum_and_a_resend_is_clean(fix_venue):
    fix_venue.set_faults(fix_garble_rate=1)
    client = logged_on(fix_venue)
    client.order("bad-sum-1", price="100.00")
    garbled = client.expect("8")
    assert not garbled.checksum_ok
    client.send("2", [(7, garbled.seq), (16, garbled.seq)])
    resent = client.expect("8")
    assert resent.checksum_ok and resent.seq == garbled.seq
    assert (resent.get(43), resent.get(11)) == ("Y", "bad-sum-1")
    assert fix_venue.counters()["fix_garbled_reports"] == 1


def test_withheld_report_shows_as_a_gap_and_is_resent(fix_venue):
    fix_venue.set_faults(fix_withhold_rate=1)
    client = logged_on(fix_venue)
    client.order("held-back-1", price="100.00")
    client.send("1", [(112, "t")])
    heartbeat = client.expect("0")
    assert heartbeat.seq == 3  # 2 was journaled, never written
    client.send("2", [(7, 2), (16, 2)])
    resent = client.expect("8")
    assert (resent.seq, resent.get(43), resent.get(11)) == (2, "Y", "held-back-1")
    assert fix_venue.counters()["fix_withheld_reports"] == 1


def test_refused_logons_get_a_logout_until_cleared(fix_venue):
    fix_venue.set_faults(fix_refuse_logons=True)
    client = fix_venue.client()
    client.logon(expect=False)
    assert client.expect("5").get(58) == "logon refused (fault injection)"
    assert client.closed_by_peer()
    fix_venue.set_faults()
    again = fix_venue.client()
    again.next_out = client.next_out
    reply = again.logon()
    # The refusal took a number (no connection was live): a gap to recover.
    assert reply.seq == 2
    assert fix_venue.counters()["fix_refused_logons"] == 0  # reset by configure
    fix_venue.set_faults(fix_refuse_logons=True)
    third = fix_venue.client()
    third.logon(expect=False, seq=1)
    third.expect("5")
    assert fix_venue.counters()["fix_refused_logons"] == 1


@pytest.mark.parametrize(("side", "price"), [("1", "191.50"), ("2", "187.50")])
def test_fill_reported_outside_the_limit(fix_venue, side, price):
    fix_venue.set_faults(fix_fill_outside_limit="0.50")
    client = logged_on(fix_venue)
    limit = "191.00" if side == "1" else "188.00"
    client.order("beyond-1", side=side, price=limit)  # crosses at once
    fill = client.expect("8")
    assert (fill.get(150), fill.get(31), fill.get(6)) == ("F", price, price)
    real = fix_venue.exchange.get_order("beyond-1").executions[0].price
    assert real == (Decimal("190.02") if side == "1" else Decimal("189.98"))
    assert fix_venue.counters()["fix_fills_outside_limit"] == 1
