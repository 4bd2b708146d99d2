"""Booking the exchange's FIX messages against real PostgreSQL: fills, final
states, the trust boundary (quarantine), cancel rejects and reconciliation."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.db import transaction

from broker.audit import ledger_discrepancies
from broker.models import (
    Account,
    Execution,
    FixJournal,
    Position,
    QuarantinedMessage,
    Trade,
    TradeEvent,
)
from broker.services.placement import trade_place
from broker.services.settlement import trade_mark_submitted
from broker.topics import topic_for_customer
from executor.fix.codec import Framer, Message, MsgType, Tag, encode
from executor.reports import ReportBooking
from tests.factories import fixed_price, give_shares, make_customer

pytestmark = pytest.mark.django_db
SESSION = "BROKER-0"
_seq = itertools.count(2)
_exec = itertools.count(1)


def place(customer, **overrides) -> Trade:
    fields = {
        "symbol": "AAPL",
        "side": "buy",
        "quantity": Decimal("10"),
        "order_type": "limit",
        "limit_price": Decimal("100.00"),
        **overrides,
    }
    trade = trade_place(customer=customer, price_source=fixed_price("100.00"), **fields)
    assert trade_mark_submitted(trade_id=trade.id)
    trade.refresh_from_db()
    return trade


def message(msg_type: str, body: list[tuple[int, object]], **kw) -> Message:
    [parsed] = Framer().feed(
        encode(
            msg_type=msg_type,
            sender="EXCHANGE",
            target=SESSION,
            seq=next(_seq),
            body=body,
            **kw,
        )
    )
    assert isinstance(parsed, Message)
    return parsed


def report(
    trade: Trade,
    exec_type: str,
    ord_status: str,
    *,
    last_qty=None,
    last_px=None,
    cum_qty=None,
    extra: dict[int, object] | None = None,
    **fields,
) -> Message:
    body: list[tuple[int, object]] = [
        (Tag.ORDER_ID, "EX-1"),
        (Tag.CL_ORD_ID, fields.pop("cl_ord_id", trade.id)),
        *([(Tag.ORIG_CL_ORD_ID, fields.pop("orig"))] if "orig" in fields else []),
        (Tag.EXEC_ID, fields.pop("exec_id", f"E{next(_exec)}")),
        (Tag.EXEC_TYPE, exec_type),
        (Tag.ORD_STATUS, ord_status),
        (Tag.SYMBOL, fields.pop("symbol", trade.symbol)),
        (Tag.SIDE, fields.pop("side", "1" if trade.side == "buy" else "2")),
        (Tag.ORDER_QTY, fields.pop("order_qty", trade.quantity)),
    ]
    if last_qty is not None:
        body += [(Tag.LAST_QTY, last_qty), (Tag.LAST_PX, last_px)]
    if cum_qty is not None:
        body.append((Tag.CUM_QTY, cum_qty))
    body += list((extra or {}).items())
    return message(MsgType.EXECUTION_REPORT, body)


class Booking:
    def __init__(self, trade: Trade) -> None:
        self.acks: list[str] = []
        self.topic = topic_for_customer(trade.account.customer_id)
        self.book = ReportBooking(
            topic=self.topic, session=SESSION, epoch=7, on_ack=self.acks.append
        )

    def __call__(self, *messages: Message):
        with transaction.atomic():
            return self.book(list(messages))


@pytest.fixture
def buyer():
    customer, _ = make_customer("10000.00")
    return customer


def cash(customer) -> tuple[Decimal, Decimal]:
    account = Account.objects.get(customer=customer)
    return account.cash, account.reserved_cash


def test_fills_move_money_and_the_last_one_ends_the_trade(buyer):
    trade = place(buyer)
    book = Booking(trade)
    book(report(trade, "0", "0", cum_qty=0))
    book(report(trade, "F", "1", last_qty=4, last_px="99.5", cum_qty=4))
    trade.refresh_from_db()
    assert (trade.status, trade.filled_quantity) == ("partially_filled", 4)
    assert trade.exchange_order_id == "EX-1"
    book(report(trade, "F", "2", last_qty=6, last_px="99", cum_qty=10))
    trade.refresh_from_db()
    assert trade.status == "filled"
    assert cash(buyer) == (Decimal("10000.00") - Decimal("992.00"), 0)
    assert Position.objects.get(account__customer=buyer).quantity == 10
    assert book.acks == [str(trade.id)] * 3


def test_a_batch_for_many_trades_books_each_in_order_in_a_few_statements(
    django_assert_max_num_queries,
):
    """Twelve reports for four trades of two customers (one holding shares of
    a symbol already, one buying its first), booked in one pass: every step as
    if booked alone, written with one statement per kind of row."""
    first, _ = make_customer("10000.00")
    topic = topic_for_customer(first.id)
    second = next(
        c
        for c, _ in (make_customer("10000.00") for _ in range(200))
        if topic_for_customer(c.id) == topic
    )
    give_shares(second, "MSFT", "5")
    trades = [
        place(customer, symbol=symbol)
        for customer in (first, second)
        for symbol in ("AAPL", "MSFT")
    ]
    messages = []
    for trade in trades:
        messages += [
            report(trade, "0", "0", cum_qty=0),
            report(trade, "F", "1", last_qty=4, last_px="99.5", cum_qty=4),
            report(trade, "F", "2", last_qty=6, last_px="99", cum_qty=10),
        ]
    book = Booking(trades[0])
    # Savepoint and release, 2 locks, then executions, trades, accounts,
    # positions (read, update, insert), ledger entries, timeline events.
    with django_assert_max_num_queries(12):
        book(*messages)
    for trade in trades:
        trade.refresh_from_db()
        assert (trade.status, trade.filled_quantity, trade.hold_remaining) == (
            "filled",
            10,
            0,
        )
        kinds = [
            (kind, status)
            for kind, status in TradeEvent.objects.filter(trade=trade)
            .order_by("created_at", "id")
            .values_list("kind", "status")
            if kind in ("report", "fill")
            or (kind, status) in (("status", "partially_filled"), ("status", "filled"))
        ]
        assert [kind for kind, _ in kinds if kind != "status"] == [
            "report",
            "fill",
            "report",
            "fill",
            "report",
        ]
        assert [status for kind, status in kinds if kind == "status"] == [
            "partially_filled",
            "filled",
        ]
    for customer in (first, second):
        assert cash(customer) == (Decimal("10000.00") - 2 * Decimal("992.00"), 0)
    held = {
        (p.account.customer_id, p.symbol): p.quantity
        for p in Position.objects.filter(account__customer__in=[first, second])
    }
    assert held == {
        (first.id, "AAPL"): 10,
        (first.id, "MSFT"): 10,
        (second.id, "AAPL"): 10,
        (second.id, "MSFT"): 15,
    }
    accounts = Account.objects.filter(customer__in=[first, second])
    assert ledger_discrepancies(account_ids=[a.pk for a in accounts]) == []


def test_a_replayed_fill_changes_nothing(buyer):
    trade = place(buyer)
    book = Booking(trade)
    fill = report(trade, "F", "1", last_qty=4, last_px="99", cum_qty=4, exec_id="X1")
    book(fill)
    book(fill)
    again = report(trade, "F", "1", last_qty=4, last_px="99", cum_qty=4, exec_id="X1")
    book(again)
    assert Execution.objects.filter(trade=trade).count() == 1
    assert cash(buyer)[0] == Decimal("10000.00") - Decimal("396.00")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"last_px": "100.01"}, "above the buy's limit"),
        ({"symbol": "MSFT"}, "symbol MSFT"),
        ({"side": "2"}, "side sell"),
        ({"order_qty": "11"}, "OrderQty 11"),
        ({"cum_qty": "5"}, "CumQty 5 is not 0 booked + LastQty 4"),
        ({"last_qty": "0", "cum_qty": "0"}, "LastQty 0"),
        ({"last_px": "NaN"}, "LastPx NaN"),
        ({"last_px": "Infinity"}, "LastPx Infinity"),
        ({"last_px": "-1"}, "LastPx -1"),
        ({"last_px": "99.00001"}, "does not fit the price columns"),
        ({"last_qty": "4.0000001", "cum_qty": "4.0000001"}, "quantity columns"),
        ({"last_qty": "11", "cum_qty": "11"}, "CumQty 11 outside"),
    ],
)
def test_a_report_failing_the_trust_checks_is_quarantined(buyer, overrides, reason):
    trade = place(buyer)
    held = cash(buyer)
    fields = {"last_qty": "4", "last_px": "99", "cum_qty": "4", **overrides}
    Booking(trade)(report(trade, "F", "1", **fields))
    trade.refresh_from_db()
    assert trade.status == "submitted" and trade.filled_quantity == 0
    assert reason in trade.review_reason
    assert cash(buyer) == held  # the hold stays, nothing moved
    record = QuarantinedMessage.objects.get(trade=trade)
    assert reason in record.reason and "35=8" in record.raw
    assert TradeEvent.objects.filter(trade=trade, kind="quarantine").exists()


def test_a_market_buy_filled_above_its_collar_is_quarantined(buyer):
    trade = place(buyer, order_type="market", limit_price=None)
    assert trade.collar_price == Decimal("105.0000")
    book = Booking(trade)
    book(report(trade, "F", "1", last_qty=1, last_px="105.01", cum_qty=1))
    trade.refresh_from_db()
    assert "above the buy's collar" in trade.review_reason
    book(report(trade, "F", "2", last_qty=10, last_px="105", cum_qty=10))
    trade.refresh_from_db()
    assert trade.status == "filled"


def test_a_sell_below_its_limit_is_quarantined():
    seller, _ = make_customer("0.00")
    give_shares(seller, "AAPL", "10")
    trade = place(seller, side="sell", limit_price=Decimal("100.00"))
    Booking(trade)(report(trade, "F", "1", last_qty=1, last_px="99.99", cum_qty=1))
    trade.refresh_from_db()
    assert "below the sell's limit" in trade.review_reason


def test_a_report_for_another_topics_trade_is_quarantined(buyer):
    trade = place(buyer)
    book = ReportBooking(topic="elsewhere.trades.9", session=SESSION, epoch=7)
    with transaction.atomic():
        book([report(trade, "F", "2", last_qty=10, last_px="99", cum_qty=10)])
    trade.refresh_from_db()
    assert trade.status == "submitted"
    assert "another topic" in trade.review_reason


def test_a_report_naming_no_trade_is_quarantined_and_passed_over(buyer):
    trade = place(buyer)
    book = Booking(trade)
    book(
        report(trade, "F", "2", last_qty=1, last_px=1, cum_qty=1, cl_ord_id="nope"),
        report(trade, "F", "2", last_qty=10, last_px="99", cum_qty=10),
    )
    assert QuarantinedMessage.objects.filter(trade=None).count() == 1
    trade.refresh_from_db()
    assert trade.status == "filled"


def test_an_unreadable_report_is_quarantined_and_rejected(buyer):
    trade = place(buyer)
    follow_ups = Booking(trade)(
        report(trade, "F", "1", last_qty="four", last_px="99", cum_qty=4)
    )
    assert QuarantinedMessage.objects.get().reason.startswith("malformed: LastQty")
    [reject] = follow_ups
    assert reject.msg_type == MsgType.REJECT
    assert dict(reject.body)[Tag.SESSION_REJECT_REASON] == "6"


def test_canceled_releases_the_rest_of_the_hold(buyer):
    trade = place(buyer)
    book = Booking(trade)
    book(report(trade, "F", "1", last_qty=4, last_px="99", cum_qty=4))
    # The cancel's report names the trade in OrigClOrdID.
    book(report(trade, "4", "4", cum_qty=4, cl_ord_id=f"{trade.id}:C", orig=trade.id))
    trade.refresh_from_db()
    assert (trade.status, trade.hold_remaining) == ("canceled", 0)
    assert cash(buyer) == (Decimal("10000.00") - Decimal("396.00"), 0)


def test_a_final_report_with_fills_missing_is_quarantined(buyer):
    trade = place(buyer)
    Booking(trade)(report(trade, "C", "C", cum_qty=3))
    trade.refresh_from_db()
    assert trade.status == "submitted"
    assert "CumQty 3 on a final report, but 0 booked" in trade.review_reason


def test_rejected_ends_the_trade_with_its_reason(buyer):
    trade = place(buyer)
    Booking(trade)(report(trade, "8", "8", cum_qty=0, extra={Tag.TEXT: "halted"}))
    trade.refresh_from_db()
    assert (trade.status, trade.reject_reason) == ("rejected", "halted")
    assert cash(buyer) == (Decimal("10000.00"), 0)


def cancel_reject(trade: Trade, reason: str) -> Message:
    return message(
        MsgType.ORDER_CANCEL_REJECT,
        [
            (Tag.CL_ORD_ID, f"{trade.id}:C"),
            (Tag.ORIG_CL_ORD_ID, trade.id),
            (Tag.ORD_STATUS, "2"),
            (Tag.CXL_REJ_RESPONSE_TO, "1"),
            (Tag.CXL_REJ_REASON, reason),
        ],
    )


def test_a_cancel_answered_unknown_order_is_reconciled_not_canceled(buyer):
    trade = place(buyer)
    Trade.objects.filter(id=trade.id).update(status="pending_cancel")
    [ask] = Booking(trade)(cancel_reject(trade, "1"))
    assert ask.msg_type == MsgType.ORDER_STATUS_REQUEST
    assert dict(ask.body)[Tag.CL_ORD_ID] == trade.id
    trade.refresh_from_db()
    assert trade.status == "pending_cancel" and trade.hold_remaining > 0


def test_a_cancel_too_late_waits_for_the_fills(buyer):
    trade = place(buyer)
    assert Booking(trade)(cancel_reject(trade, "0")) == []
    trade.refresh_from_db()
    assert trade.status == "submitted"


def status_report(trade: Trade, ord_status: str, cum_qty, extra=None) -> Message:
    return report(trade, "I", ord_status, cum_qty=cum_qty, extra=extra)


def test_status_unknown_at_the_venue_sends_the_order_again(buyer):
    trade = place(buyer)
    [again] = Booking(trade)(
        status_report(trade, "8", 0, extra={Tag.ORD_REJ_REASON: 5})
    )
    assert again.msg_type == MsgType.NEW_ORDER_SINGLE
    assert dict(again.body)[Tag.POSS_RESEND] == "Y"


def test_status_unknown_for_a_pending_cancel_cancels_it(buyer):
    trade = place(buyer)
    Trade.objects.filter(id=trade.id).update(status="pending_cancel")
    assert (
        Booking(trade)(status_report(trade, "8", 0, extra={Tag.ORD_REJ_REASON: 5}))
        == []
    )
    trade.refresh_from_db()
    assert trade.status == "canceled"
    assert cash(buyer) == (Decimal("10000.00"), 0)


def test_status_with_fills_never_delivered_is_quarantined(buyer):
    trade = place(buyer)
    Booking(trade)(status_report(trade, "2", 10, extra={Tag.AVG_PX: "99"}))
    trade.refresh_from_db()
    assert trade.status == "submitted" and trade.filled_quantity == 0
    assert "fills the session did not deliver" in trade.review_reason


def test_status_that_agrees_applies_the_final_state(buyer):
    trade = place(buyer)
    book = Booking(trade)
    book(report(trade, "F", "1", last_qty=4, last_px="99", cum_qty=4))
    book(status_report(trade, "4", 4))
    trade.refresh_from_db()
    assert trade.status == "canceled"


def journal(trade: Trade, seq: int, msg_type: str) -> None:
    FixJournal.objects.create(
        session=SESSION,
        seq=seq,
        msg_type=msg_type,
        trade=trade,
        body=f"11={trade.id}",
        sending_time="20260101-00:00:00.000",
    )


def test_a_venue_without_status_requests_gets_the_order_again(buyer):
    trade = place(buyer)
    journal(trade, 41, MsgType.ORDER_STATUS_REQUEST)
    refusal = message(
        MsgType.BUSINESS_MESSAGE_REJECT,
        [
            (Tag.REF_SEQ_NUM, 41),
            (Tag.REF_MSG_TYPE, "H"),
            (Tag.BUSINESS_REJECT_REASON, 3),
        ],
    )
    [again] = Booking(trade)(refusal)
    assert again.msg_type == MsgType.NEW_ORDER_SINGLE
    assert dict(again.body)[Tag.POSS_RESEND] == "Y"


def test_an_order_the_venue_rejects_at_session_level_is_rejected(buyer):
    trade = place(buyer)
    journal(trade, 42, MsgType.NEW_ORDER_SINGLE)
    refusal = message(
        MsgType.REJECT,
        [(Tag.REF_SEQ_NUM, 42), (Tag.SESSION_REJECT_REASON, 1), (Tag.TEXT, "x")],
    )
    Booking(trade)(refusal)
    trade.refresh_from_db()
    assert trade.status == "rejected"
    assert cash(buyer) == (Decimal("10000.00"), 0)


def test_a_message_that_never_books_is_quarantined_with_its_trade(buyer):
    trade = place(buyer)
    booking = Booking(trade).book
    with transaction.atomic():
        booking.poisoned(
            report(trade, "F", "1", last_qty=1, last_px=99, cum_qty=1), "boom"
        )
    trade.refresh_from_db()
    assert trade.review_reason == "boom"
    assert QuarantinedMessage.objects.get(trade=trade).reason == "boom"


def test_a_duplicate_clordid_refusal_does_not_reject_the_trade(buyer):
    trade = place(buyer)
    Booking(trade)(report(trade, "8", "8", cum_qty=0, extra={Tag.ORD_REJ_REASON: 6}))
    trade.refresh_from_db()
    assert trade.status == "submitted" and trade.hold_remaining > 0
    assert "duplicate ClOrdID" in trade.review_reason


def test_an_order_the_venue_failed_on_is_left_to_reconciliation(buyer):
    trade = place(buyer)
    journal(trade, 43, MsgType.NEW_ORDER_SINGLE)
    refusal = message(
        MsgType.BUSINESS_MESSAGE_REJECT,
        [
            (Tag.REF_SEQ_NUM, 43),
            (Tag.REF_MSG_TYPE, "D"),
            (Tag.BUSINESS_REJECT_REASON, 0),
        ],
    )
    assert Booking(trade)(refusal) == []
    trade.refresh_from_db()
    assert trade.status == "submitted"
