"""The periodic jobs on crafted data, against the real PostgreSQL and Redis."""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F
from django.utils import timezone

from broker import jobs, tasks
from broker.events import EventType
from broker.models import (
    Account,
    FixJournal,
    IdempotencyRecord,
    OutboxEvent,
    Trade,
    TradeEvent,
)
from broker.services.placement import trade_place
from tests.factories import fixed_price, make_customer

pytestmark = pytest.mark.django_db

THRESHOLD = timedelta(seconds=120)
Status = Trade.Status


def place(customer, *, time_in_force="day") -> Trade:
    # Only a limit order may rest until canceled (placement refuses a gtc market).
    gtc = time_in_force == "gtc"
    return trade_place(
        customer=customer,
        symbol="AAPL",
        side="buy",
        quantity=Decimal("2"),
        order_type="limit" if gtc else "market",
        limit_price=Decimal("100.00") if gtc else None,
        price_source=fixed_price("100.00"),
        time_in_force=time_in_force,
    )


def open_trade(
    *,
    status: str = Status.SUBMITTED,
    idle: timedelta = timedelta(0),
    age: timedelta = timedelta(0),
    time_in_force: str = "day",
) -> Trade:
    """A trade in ``status`` last updated ``idle`` ago and created ``age`` ago
    (written directly: the tests stand in for the leader)."""
    customer, _ = make_customer()
    trade = place(customer, time_in_force=time_in_force)
    now = timezone.now()
    Trade.objects.filter(pk=trade.pk).update(
        status=status,
        submitted_at=now - age,
        created_at=now - age,
        updated_at=now - idle,
    )
    trade.refresh_from_db()
    return trade


def reconcile_requests(trade: Trade) -> list[TradeEvent]:
    return list(
        TradeEvent.objects.filter(
            trade=trade,
            kind="outbox",
            detail__event_type=EventType.TRADE_RECONCILE_REQUESTED,
        )
    )


def reconcile_outbox(trade: Trade) -> list[OutboxEvent]:
    return list(
        OutboxEvent.objects.filter(
            event_type=EventType.TRADE_RECONCILE_REQUESTED,
            payload__trade_id=str(trade.id),
        )
    )


# --- reconcile_stuck_trades ---------------------------------------------------


def test_a_stuck_trade_gets_one_reconcile_request_per_threshold():
    trade = open_trade(idle=timedelta(minutes=5))

    assert jobs.reconcile_stuck_trades(older_than=THRESHOLD) >= 1
    [event] = reconcile_outbox(trade)
    assert event.payload == {
        "trade_id": str(trade.id),
        "customer_id": trade.account.customer_id,
    }
    assert event.key == str(trade.account.customer_id)
    assert event.published_at is None
    [request] = reconcile_requests(trade)
    assert request.detail["outbox_id"] == event.pk
    assert request.detail["requested_by"] == "job:reconcile_stuck_trades"

    # A second run within the threshold asks nothing more.
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert len(reconcile_outbox(trade)) == 1

    # Once the last request is older than the threshold, it asks again.
    TradeEvent.objects.filter(pk=request.pk).update(
        created_at=timezone.now() - THRESHOLD - timedelta(seconds=1)
    )
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert len(reconcile_outbox(trade)) == 2


def test_the_job_never_writes_the_trade():
    trade = open_trade(status=Status.PARTIALLY_FILLED, idle=timedelta(minutes=5))
    before = Trade.objects.values().get(pk=trade.pk)

    jobs.reconcile_stuck_trades(older_than=THRESHOLD)

    assert len(reconcile_requests(trade)) == 1
    assert Trade.objects.values().get(pk=trade.pk) == before


@pytest.mark.parametrize(
    "status", [Status.SUBMITTED, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL]
)
def test_every_open_status_is_reconciled(status):
    trade = open_trade(status=status, idle=timedelta(minutes=5))
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert len(reconcile_requests(trade)) == 1


def test_a_fresh_trade_gets_none():
    trade = open_trade(idle=timedelta(seconds=30))
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert reconcile_requests(trade) == []


@pytest.mark.parametrize(
    "status", [Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED]
)
def test_terminal_trades_get_none(status):
    trade = open_trade(status=status, idle=timedelta(hours=1))
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert reconcile_requests(trade) == []


def test_a_trade_flagged_for_review_is_left_to_operations():
    flagged = open_trade(idle=timedelta(minutes=5))
    Trade.objects.filter(pk=flagged.pk).update(review_reason="LastPx above the limit")
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert reconcile_requests(flagged) == []


def test_unsent_trades_are_left_to_their_placement_event():
    accepted = open_trade(status=Status.ACCEPTED, idle=timedelta(hours=1))
    canceling = open_trade(status=Status.PENDING_CANCEL, idle=timedelta(hours=1))
    Trade.objects.filter(pk=canceling.pk).update(submitted_at=None)

    jobs.reconcile_stuck_trades(older_than=THRESHOLD)

    assert reconcile_requests(accepted) == []
    assert reconcile_requests(canceling) == []


# --- expire_day_orders --------------------------------------------------------


def test_open_day_orders_from_before_today_are_reconciled():
    since_midnight = timezone.now() - jobs.start_of_day()
    yesterday = since_midnight + timedelta(minutes=1)
    old_day = open_trade(age=yesterday)
    old_gtc = open_trade(age=yesterday, time_in_force="gtc")
    today_day = open_trade(age=since_midnight / 2)
    old_filled = open_trade(status=Status.FILLED, age=yesterday)

    assert jobs.expire_day_orders() >= 1

    [request] = reconcile_requests(old_day)
    assert request.detail["requested_by"] == "job:expire_day_orders"
    assert reconcile_requests(old_gtc) == []
    assert reconcile_requests(today_day) == []
    assert reconcile_requests(old_filled) == []
    # Throttled like the stuck-trade job, and shared with it.
    jobs.expire_day_orders()
    Trade.objects.filter(pk=old_day.pk).update(
        updated_at=timezone.now() - timedelta(hours=1)
    )
    jobs.reconcile_stuck_trades(older_than=THRESHOLD)
    assert len(reconcile_requests(old_day)) == 1


# --- prune_outbox -------------------------------------------------------------


def outbox_row(*, age: timedelta, published: bool) -> OutboxEvent:
    event = OutboxEvent.objects.create(
        topic="trades.0", key="1", event_type="test.prune", payload={}
    )
    then = timezone.now() - age
    OutboxEvent.objects.filter(pk=event.pk).update(
        created_at=then, published_at=then if published else None
    )
    return event


def test_prune_deletes_old_published_rows_only():
    retention = timedelta(hours=72)
    old_published = [outbox_row(age=timedelta(hours=73), published=True)]
    old_published += [outbox_row(age=timedelta(days=9), published=True)]
    old_unpublished = outbox_row(age=timedelta(days=9), published=False)
    recent_published = outbox_row(age=timedelta(hours=71), published=True)

    # A batch smaller than the rows to delete: the job loops.
    counts = jobs.prune_outbox(retention, batch=1)

    assert counts["outbox"] >= 2
    remaining = set(
        OutboxEvent.objects.filter(event_type="test.prune").values_list("pk", flat=True)
    )
    assert remaining == {old_unpublished.pk, recent_published.pk}
    assert not {e.pk for e in old_published} & remaining


def test_prune_deletes_expired_idempotency_records(settings):
    settings.IDEMPOTENCY_TTL_HOURS = 24
    customer, _ = make_customer()
    old = IdempotencyRecord.objects.create(
        customer=customer, key="old", fingerprint="x"
    )
    new = IdempotencyRecord.objects.create(
        customer=customer, key="new", fingerprint="x"
    )
    IdempotencyRecord.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    counts = jobs.prune_outbox(timedelta(hours=72))

    assert counts["idempotency"] >= 1
    assert list(IdempotencyRecord.objects.filter(customer=customer)) == [new]


def test_prune_deletes_fix_journal_rows_past_their_retention(settings):
    settings.FIX_JOURNAL_RETENTION_HOURS = 48
    rows = [
        FixJournal.objects.create(
            session="PRUNE-0", seq=seq, msg_type="D", body="11=x", sending_time="t"
        )
        for seq in (1, 2)
    ]
    FixJournal.objects.filter(pk=rows[0].pk).update(
        created_at=timezone.now() - timedelta(hours=49)
    )

    counts = jobs.prune_outbox(timedelta(hours=72))

    assert counts["fix_journal"] >= 1
    assert list(FixJournal.objects.filter(session="PRUNE-0")) == [rows[1]]


# --- audit_ledger -------------------------------------------------------------


def test_audit_is_clean_on_good_data(caplog):
    open_trade(idle=timedelta(minutes=5))  # an open trade holding cash
    with caplog.at_level(logging.INFO, logger="broker.jobs"):
        assert jobs.audit_ledger() == []

    assert "LEDGER AUDIT ALERT" not in caplog.text
    last = jobs.last_audit()
    assert last["ok"] is True
    assert last["violations"] == []
    assert timezone.now() - last["checked_at"] < timedelta(minutes=1)


def test_audit_reports_a_balance_that_differs_from_its_ledger(caplog):
    customer, _ = make_customer("1000.00")
    account = Account.objects.get(customer=customer)
    Account.objects.filter(pk=account.pk).update(cash=F("cash") + Decimal("5.00"))

    with caplog.at_level(logging.ERROR, logger="broker.jobs"):
        violations = jobs.audit_ledger()

    mine = [v for v in violations if v.startswith(f"account {account.pk}:")]
    assert mine == [
        f"account {account.pk}: cash 1005.00 vs ledger 1000.000000, "
        "reserved 0.00 vs ledger 0"
    ]
    [alert] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert alert.getMessage().startswith(
        f"LEDGER AUDIT ALERT violations={len(violations)} first: "
    )
    last = jobs.last_audit()
    assert last["ok"] is False
    assert mine[0] in last["violations"]


def test_audit_reports_a_terminal_trade_with_hold_left():
    trade = open_trade(status=Status.FILLED)
    assert trade.hold_remaining > 0

    violations = jobs.audit_ledger()

    assert [v for v in violations if str(trade.id) in v] == [
        f"trade {trade.id} (filled, account {trade.account_id}): hold "
        f"{trade.hold_remaining} left on a terminal trade"
    ]
    assert jobs.last_audit()["ok"] is False


def test_audit_command_exits_0_when_clean(capsys):
    call_command("audit")
    assert "ledger audit: clean, 0 violations" in capsys.readouterr().out


def test_audit_command_exits_1_on_a_violation(capsys):
    trade = open_trade(status=Status.CANCELED)

    with pytest.raises(CommandError) as raised:
        call_command("audit")

    assert raised.value.returncode == 1
    assert "violation(s)" in str(raised.value)
    assert str(trade.id) in capsys.readouterr().out


def test_last_audit_is_none_when_no_audit_ran(monkeypatch):
    monkeypatch.setattr(jobs, "AUDIT_CACHE_KEY", "ledger_audit:never-written")
    assert jobs.last_audit() is None


# --- tasks ----------------------------------------------------------------------


def test_tasks_run_the_jobs_with_the_settings(settings):
    settings.STUCK_TRADE_SECONDS = 60
    trade = open_trade(idle=timedelta(seconds=90))

    assert tasks.reconcile_stuck_trades.apply().get() >= 1
    assert len(reconcile_requests(trade)) == 1
    assert isinstance(tasks.expire_day_orders.apply().get(), int)
    assert set(tasks.prune_outbox.apply().get()) == {
        "outbox",
        "idempotency",
        "fix_journal",
    }
    assert tasks.audit_ledger.apply().get() == 0


def test_audit_reports_negative_balances_should_a_constraint_be_dropped():
    from django.db import connection

    with connection.cursor() as cursor:  # rolled back with the test
        cursor.execute(
            "ALTER TABLE broker_account DROP CONSTRAINT account_cash_gte_0, "
            "DROP CONSTRAINT account_reserved_lte_cash"
        )
    customer, _ = make_customer("0.00")
    account = Account.objects.get(customer=customer)
    Account.objects.filter(pk=account.pk).update(cash=Decimal("-1.00"))

    violations = jobs.audit_ledger()

    assert f"account {account.pk}: negative balance, cash -1.00 reserved 0.00" in (
        violations
    )
