"""The FIX application mapping: orders, cancels and status requests into the
engine; the engine's reports out as ExecutionReports (over real sockets,
in-process exchange with frozen quotes: AAPL bid 189.98 / ask 190.02)."""

from __future__ import annotations

from decimal import Decimal

from exchange_mock.fixapp import report_fields

NOW = "20240506-12:00:00"


def logged_on(fix_venue, sender: str = "BROKER-0"):
    client = fix_venue.client(sender)
    client.logon()
    return client


def cancel(client, cl_ord_id: str, original: str):
    client.send(
        "F", [(11, cl_ord_id), (41, original), (55, "AAPL"), (54, "1"), (60, NOW)]
    )


def status(client, cl_ord_id: str):
    client.send("H", [(11, cl_ord_id), (55, "AAPL"), (54, "1")])


def test_resting_limit_order_new_then_fill(fix_venue):
    client = logged_on(fix_venue)
    client.order("lim-1", quantity="10", price="189.00", tif="1")
    new = client.expect("8")
    assert new.get(37) == "EX-000001" and new.get(17) == "EX-000001-new"
    assert (new.get(150), new.get(39), new.get(11)) == ("0", "0", "lim-1")
    assert (new.get(55), new.get(54), new.get(38)) == ("AAPL", "1", "10")
    assert (new.get(40), new.get(44), new.get(59)) == ("2", "189.00", "1")
    assert (new.get(14), new.get(151), new.get(6)) == ("0", "10", "0")
    fix_venue.set_quote("188.50")  # ask 188.52 <= 189
    fill = client.expect("8")
    assert (fill.get(150), fill.get(39), fill.get(17)) == ("F", "2", "EX-000001-1")
    assert (fill.get(32), fill.get(31)) == ("10", "188.52")
    assert (fill.get(14), fill.get(151), fill.get(6)) == ("10", "0", "188.52")
    assert fill.get(60)


def test_partial_fills_carry_cumulative_quantities(fix_venue):
    client = logged_on(fix_venue)
    fix_venue.set_quote("190.00", size="4")
    client.order("part-1", quantity="10")  # market buy, 4 at a time
    first = client.expect("8")
    assert (first.get(150), first.get(39), first.get(32)) == ("F", "1", "4")
    assert (first.get(14), first.get(151)) == ("4", "6")
    fix_venue.set_quote("191.00", size="4")
    second = client.expect("8")
    assert (second.get(14), second.get(151), second.get(31)) == ("8", "2", "191.02")
    assert Decimal(second.get(6)) == (4 * Decimal("190.02") + 4 * Decimal("191.02")) / 8


def test_ioc_remainder_is_canceled_after_its_fill(fix_venue):
    client = logged_on(fix_venue)
    fix_venue.set_quote("190.00", size="3")
    client.order("ioc-1", quantity="5", tif="3")
    fill, canceled = client.collect(2)
    assert (fill.get(150), fill.get(32)) == ("F", "3")
    assert (canceled.get(150), canceled.get(39), canceled.get(11)) == (
        "4",
        "4",
        "ioc-1",
    )
    assert canceled.get(41) is None
    assert (canceled.get(14), canceled.get(151)) == ("3", "0")


def test_market_closed_rejects_and_the_close_expires_day_orders(fix_venue):
    client = logged_on(fix_venue)
    client.order("day-1", price="100.00")
    client.expect("8")
    fix_venue.exchange.close_market()
    expired = client.expect("8")
    assert (expired.get(150), expired.get(39), expired.get(11)) == ("C", "C", "day-1")
    client.order("closed-1")
    rejected = client.expect("8")
    assert (rejected.get(150), rejected.get(39)) == ("8", "8")
    assert (rejected.get(103), rejected.get(58)) == ("2", "market_closed")


def test_resend_of_an_order_gets_its_state_not_a_second_order(fix_venue):
    client = logged_on(fix_venue)
    client.order("dup-1", price="100.00")
    client.expect("8")
    client.order("dup-1", price="100.00", extra=[(97, "Y")])  # PossResend
    state = client.expect("8")
    assert (state.get(150), state.get(39), state.get(37)) == ("I", "0", "EX-000001")
    assert (state.get(14), state.get(151)) == ("0", "10")
    client.order("dup-1", price="100.00")  # same parameters, no PossResend
    assert client.expect("8").get(150) == "I"
    assert len(fix_venue.exchange.list_orders()) == 1


def test_same_cl_ord_id_with_other_parameters_is_a_duplicate_order(fix_venue):
    client = logged_on(fix_venue)
    client.order("dup-2", price="100.00")
    client.expect("8")
    client.order("dup-2", price="101.00")
    rejected = client.expect("8")
    assert (rejected.get(150), rejected.get(39), rejected.get(103)) == ("8", "8", "6")
    assert rejected.get(37) == "NONE" and rejected.get(44) == "101.00"
    other = logged_on(fix_venue, "BROKER-1")
    other.order("dup-2", price="100.00")
    refused = other.expect("8")
    assert refused.get(103) == "6"
    assert "another session" in refused.get(58)
    assert fix_venue.exchange.get_order("dup-2").limit_price == Decimal("100.00")


def test_orders_refused_before_acceptance(fix_venue):
    client = logged_on(fix_venue)
    cases = [
        (dict(symbol="NOPE"), "1"),
        (dict(price="100.00", extra=[(59, "2")]), "11"),  # OPG: valid FIX, not here
        (dict(quantity="1.0000001"), "13"),
        (dict(price="100.00001"), "99"),
    ]
    for index, (options, reason) in enumerate(cases):
        client.order(f"refused-{index}", **options)
        report = client.expect("8")
        assert (report.get(150), report.get(39), report.get(37)) == ("8", "8", "NONE")
        assert report.get(103) == reason, report
        assert report.get(58)
    client.send(
        "D",
        [(11, "stop-1"), (55, "AAPL"), (54, "1"), (60, NOW), (38, "1"), (40, "3")],
    )
    assert client.expect("8").get(103) == "11"
    assert fix_venue.exchange.list_orders() == []


def test_cancel_echoes_the_request_ids(fix_venue):
    client = logged_on(fix_venue)
    client.order("c-1", price="100.00")
    client.expect("8")
    cancel(client, "c-1:C", "c-1")
    canceled = client.expect("8")
    assert (canceled.get(150), canceled.get(39)) == ("4", "4")
    assert (canceled.get(11), canceled.get(41)) == ("c-1:C", "c-1")
    assert (canceled.get(55), canceled.get(54), canceled.get(38)) == ("AAPL", "1", "10")
    cancel(client, "c-1:C", "c-1")  # the same request again: too late now
    again = client.expect("9")
    assert (again.get(102), again.get(39), again.get(37)) == ("0", "4", "EX-000001")


def test_cancel_of_an_unknown_or_foreign_order_is_unknown(fix_venue):
    mine = logged_on(fix_venue)
    theirs = logged_on(fix_venue, "BROKER-1")
    theirs.order("foreign-1", price="100.00")
    theirs.expect("8")
    for original in ("nobody", "foreign-1"):
        cancel(mine, f"{original}:C", original)
        reject = mine.expect("9")
        assert (reject.get(102), reject.get(37), reject.get(41)) == (
            "1",
            "NONE",
            original,
        )
    assert fix_venue.exchange.get_order("foreign-1").status == "new"


def test_status_request_reports_the_order_or_unknown(fix_venue):
    client = logged_on(fix_venue)
    fix_venue.set_quote("190.00", size="4")
    client.order("s-1", quantity="10", price="191.00")
    client.expect("8")
    status(client, "s-1")
    state = client.expect("8")
    assert (state.get(150), state.get(39), state.get(11)) == ("I", "1", "s-1")
    assert (state.get(14), state.get(151), state.get(6)) == ("4", "6", "190.02")
    assert (state.get(55), state.get(54), state.get(38)) == ("AAPL", "1", "10")
    status(client, "missing")
    unknown = client.expect("8")
    assert (unknown.get(150), unknown.get(39), unknown.get(103)) == ("I", "8", "5")
    other = logged_on(fix_venue, "BROKER-1")
    status(other, "s-1")  # not its order
    assert other.expect("8").get(103) == "5"


def test_status_never_runs_ahead_of_the_reports(fix_venue):
    client = logged_on(fix_venue)
    client.order("ahead-1", price="189.00")
    client.expect("8")
    # The fill and the status request race; the fill's report is always first.
    fix_venue.set_quote("188.00")
    status(client, "ahead-1")
    fill, state = client.collect(2)
    assert (fill.get(150), state.get(150)) == ("F", "I")
    assert state.get(14) == "10"


def test_report_fields_of_a_fill_moved_outside_the_limit():
    order = {
        "order_id": "EX-000009",
        "client_order_id": "x",
        "symbol": "AAPL",
        "side": "sell",
        "quantity": "10",
        "type": "limit",
        "limit_price": "100.00",
        "time_in_force": "day",
        "status": "filled",
        "filled_quantity": "10",
        "leaves_quantity": "0",
        "average_price": "100.50",
        "executions": [
            {"exec_id": "EX-000009-1", "quantity": "5", "price": "100.40"},
            {"exec_id": "EX-000009-2", "quantity": "5", "price": "100.60"},
        ],
    }
    execution = {**order["executions"][1], "timestamp": "2024-05-06T12:00:00Z"}
    report = {"type": "fill", "order": order, "execution": execution}
    fields, shifted = report_fields(report, Decimal("0.5"))
    values = dict(fields)
    assert shifted
    assert values[31] == "99.50"  # a sell reported below its limit
    assert values[6] == "99.95"  # (5 * 100.40 + 5 * 99.50) / 10
    assert values[60] == "20240506-12:00:00.000"
    clean, shifted = report_fields(report)
    assert not shifted and dict(clean)[31] == "100.60"
