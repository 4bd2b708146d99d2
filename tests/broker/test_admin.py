"""The operations admin: every page renders, actions go through the services and
leave a LogEntry, money stays read-only, the extra panels (timeline, dashboard,
outbox lag, live leadership) show the right numbers."""

import logging
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from kazoo.client import KazooClient

from broker import ops
from broker.admin import LEDGER_INLINE_LIMIT
from broker.models import (
    Account,
    ApiToken,
    ConsumerOffset,
    DeadLetter,
    FixJournal,
    FixSession,
    IdempotencyRecord,
    LedgerEntry,
    OutboxEvent,
    QuarantinedMessage,
    Trade,
    TradeEvent,
)
from broker.services.adjustments import adjustment_request_create
from broker.services.customers import account_adjust
from broker.services.placement import trade_place
from broker.services.settlement import (
    VenueFill,
    VenueOrder,
    trade_apply_order,
    trade_mark_submitted,
)
from broker.topics import all_topics, topic_for_customer
from executor.fencing import topic_leader_claim
from executor.offsets import consumer_offset_advance
from tests.factories import fixed_price, make_customer

pytestmark = pytest.mark.django_db

Status = Trade.Status


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser("ops", password="ops-password")


@pytest.fixture
def staff_client(client, superuser):
    client.force_login(superuser)
    return client


def place(customer, quantity="1", **kwargs) -> Trade:
    return trade_place(
        customer=customer,
        symbol=kwargs.pop("symbol", "AAPL"),
        side=kwargs.pop("side", "buy"),
        quantity=Decimal(quantity),
        order_type="market",
        price_source=fixed_price("10.00"),
        **kwargs,
    )


def fill(trade: Trade, *, price: str = "10.00", epoch: int | None = 7) -> Trade:
    """What the executor books when the exchange fills the whole order."""
    with transaction.atomic():
        trade_mark_submitted(trade_id=trade.id, epoch=epoch)
        order = VenueOrder(
            order_id=f"X-{trade.id.hex[:8]}",
            status="filled",
            executions=(
                VenueFill(
                    exec_id=f"E-{trade.id.hex[:8]}",
                    quantity=trade.quantity,
                    price=Decimal(price),
                    executed_at=datetime.now(UTC),
                ),
            ),
        )
        return trade_apply_order(trade_id=trade.id, order=order, epoch=epoch)


def post_action(client, model: str, action: str, objects) -> object:
    return client.post(
        reverse(f"admin:broker_{model}_changelist"),
        {
            "action": action,
            "index": "0",
            "_selected_action": [str(o.pk) for o in objects],
        },
        follow=True,
    )


def flash(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def log_messages(obj) -> list[str]:
    return list(
        LogEntry.objects.filter(object_id=str(obj.pk)).values_list(
            "change_message", flat=True
        )
    )


# --- Every page -----------------------------------------------------------------


def test_every_changelist_and_change_page_renders_with_data(staff_client):
    customer, _ = make_customer("5000.00")
    fill(place(customer, client_order_id="mine-1"))
    place(customer)
    topic = topic_for_customer(customer.pk)
    topic_leader_claim(topic=topic, epoch=42, holder="executor-a")
    consumer_offset_advance(topic=topic, partition=0, next_offset=17)
    FixSession.objects.create(sender_comp_id="BROKER-0", topic=topic)
    sent = place(customer)
    FixJournal.objects.create(
        session="BROKER-0",
        seq=2,
        msg_type="D",
        trade=sent,
        body=f"11={sent.id}",
        sending_time="20261204-10:00:00.000",
    )
    QuarantinedMessage.objects.create(
        session="BROKER-0",
        seq=3,
        msg_type="8",
        trade=sent,
        reason="LastPx 5000 above the buy's limit 100",
        raw="8=FIX.4.4|9=5|35=8|10=000|",
        epoch=42,
    )
    IdempotencyRecord.objects.create(
        customer=customer, key="k-1", fingerprint="f" * 64, response_status=201
    )
    DeadLetter.objects.create(
        topic=topic, partition=0, offset=3, reason="undecodable", epoch=42
    )
    adjustment_request_create(
        account=customer.account,
        amount=Decimal("50000.00"),
        reason="wire received twice",
        requested_by=get_user_model().objects.get(username="ops"),
    )
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "broker":
            continue
        name = model._meta.model_name
        response = staff_client.get(reverse(f"admin:broker_{name}_changelist"))
        assert response.status_code == 200, name
        assert response.context["cl"].result_count >= 1, name
        obj = model_admin.get_queryset(response.wsgi_request).first()
        detail = reverse(f"admin:broker_{name}_change", args=[obj.pk])
        assert staff_client.get(detail).status_code == 200, detail
    assert staff_client.get(reverse("admin:index")).status_code == 200


def test_money_cannot_be_edited_from_the_admin(staff_client):
    customer, _ = make_customer("5000.00")
    url = reverse("admin:broker_account_change", args=[customer.account.pk])
    response = staff_client.post(url, {"cash": "999999.00"})
    assert response.status_code == 403
    customer.account.refresh_from_db()
    assert str(customer.account.cash) == "5000.00"
    entry = LedgerEntry.objects.filter(account=customer.account).first()
    for name in ["account", "ledgerentry", "trade", "execution", "outboxevent"]:
        assert staff_client.get(reverse(f"admin:broker_{name}_add")).status_code == 403
    delete = reverse("admin:broker_ledgerentry_delete", args=[entry.pk])
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_admin_login_page_is_served_to_anonymous_users(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200


def test_non_staff_users_are_sent_to_the_login_page(client):
    customer, _ = make_customer()
    client.force_login(customer.user)
    for url in [
        reverse("admin:index"),
        reverse("admin:broker_trade_changelist"),
        reverse("admin:broker_account_adjust", args=[customer.account.pk]),
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_view_only_staff_cannot_act_or_adjust(client):
    user = get_user_model().objects.create_user("viewer", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="broker", codename__startswith="view_"
        )
    )
    client.force_login(user)
    customer, _ = make_customer("100.00")
    trade = place(customer)
    response = client.get(reverse("admin:broker_trade_changelist"))
    assert response.status_code == 200
    assert "cancel_trades" not in response.content.decode()
    post_action(client, "trade", "cancel_trades", [trade])
    trade.refresh_from_db()
    assert trade.status == Status.ACCEPTED
    adjust = reverse("admin:broker_account_adjust", args=[customer.account.pk])
    response = client.post(adjust, {"amount": "5.00", "reason": "x"})
    assert response.status_code == 403


# --- Trades ---------------------------------------------------------------------


def test_trade_list_filters_and_search(staff_client):
    alice, _ = make_customer()
    bob, _ = make_customer()
    recent = place(alice, client_order_id="alice-order-1")
    old = place(bob, side="buy", symbol="MSFT")
    Trade.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(days=2),
        exchange_order_id="EX-OLD-77",
    )
    url = reverse("admin:broker_trade_changelist")

    def ids(params) -> set:
        response = staff_client.get(url, params)
        assert response.status_code == 200, params
        return {t.pk for t in response.context["cl"].result_list}

    assert ids({"age": "last_hour"}) >= {recent.pk}
    assert old.pk not in ids({"age": "last_hour"})
    assert recent.pk in ids({"age": "today"})
    assert old.pk in ids({"age": "older_1h"}) and old.pk in ids({"age": "older_1d"})
    assert recent.pk not in ids({"age": "older_1d"})
    assert ids({"symbol": "MSFT"}) >= {old.pk}
    assert recent.pk not in ids({"symbol": "MSFT"})
    assert recent.pk in ids({"status__exact": "accepted", "side__exact": "buy"})
    assert ids({"q": alice.user.username}) == {recent.pk}
    assert ids({"q": "alice-order-1"}) == {recent.pk}
    assert ids({"q": "EX-OLD-77"}) == {old.pk}
    assert ids({"q": str(recent.pk)[:13]}) == {recent.pk}
    # By customer: the list links each customer to their own trades.
    page = staff_client.get(url).content.decode()
    assert f'href="?customer={bob.pk}"' in page
    assert ids({"customer": str(bob.pk)}) == {old.pk}
    assert ids({"customer": "not-a-number"}) == set()


def test_trade_page_shows_the_fills_and_the_timeline_in_order(staff_client):
    customer, _ = make_customer("5000.00")
    trade = place(customer, quantity="3")
    placed_event = OutboxEvent.objects.get(payload__trade_id=str(trade.id))
    OutboxEvent.objects.filter(pk=placed_event.pk).update(published_at=timezone.now())
    TradeEvent.objects.create(
        trade=trade,
        kind="handled",
        epoch=7,
        detail={
            "topic": placed_event.topic,
            "partition": 0,
            "offset": 4242,
            "action": "place",
            "outcome": "<b>new</b>",
            "exchange_order_id": "X-1",
            "executor": "executor-7",
        },
    )
    filled = fill(trade, price="9.50")
    TradeEvent.objects.create(
        trade=trade,
        kind="report",
        epoch=7,
        detail={"session": placed_event.topic, "seq": 31, "type": "fill"},
    )
    assert filled.status == Status.FILLED

    timeline = ops.trade_timeline(trade)
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)
    assert {e.source for e in timeline} == {"event", "outbox", "execution", "ledger"}

    response = staff_client.get(reverse("admin:broker_trade_change", args=[trade.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    timeline_html = page[page.index('id="trade-timeline"') :]
    topic, short = placed_event.topic, trade.id.hex[:8]
    markers = [
        "accepted; hold=31.50, last_price=10.00",  # placement's status row
        "<td>reserved_cash USD +31.500000",  # the hold
        f"#{placed_event.pk} trade.placed → topic {topic} (key",  # outbox row
        f"outbox #{placed_event.pk} trade.placed → topic {topic}",  # its event
        f"<td>#{placed_event.pk} trade.placed → topic {topic}</td>",  # published
        f"kafka {topic}[0] offset 4242 by executor-7: action place → "
        "&lt;b&gt;new&lt;/b&gt;",
        "accepted → submitted",
        f"<td>E-{short}: 3.000000 @ 9.5000",  # the execution row
        "<td>cash USD -28.500000",  # the fill's ledger entries
        f"fill E-{short}: 3 @ 9.50",  # the fill's timeline event
        "submitted → filled",
        "<td>reserved_cash USD -3.000000",  # the rest of the hold released
        f"report session {topic} seq 31",
    ]
    positions = [timeline_html.find(marker) for marker in markers]
    assert all(p >= 0 for p in positions), list(zip(markers, positions, strict=True))
    assert positions == sorted(positions), list(zip(markers, positions, strict=True))
    assert "<b>new</b>" not in page  # escaped
    assert "published" in timeline_html
    assert f"E-{short}" in page[: page.index('id="trade-timeline"')]  # fills inline


def test_cancel_action_cancels_cancelable_trades_and_skips_the_rest(staff_client):
    customer, _ = make_customer("5000.00")
    open_trade = place(customer)
    done_trade = fill(place(customer))
    response = post_action(
        staff_client, "trade", "cancel_trades", [open_trade, done_trade]
    )
    assert response.status_code == 200

    open_trade.refresh_from_db()
    assert open_trade.status == Status.PENDING_CANCEL
    assert OutboxEvent.objects.filter(
        event_type="trade.cancel_requested", payload__trade_id=str(open_trade.id)
    ).exists()
    event = open_trade.events.get(kind="status", status=Status.PENDING_CANCEL)
    assert event.detail["requested_by"] == "staff:ops"
    (logged,) = log_messages(open_trade)
    assert "Cancel requested by staff:ops" in logged
    assert "pending_cancel" in logged

    done_trade.refresh_from_db()
    assert done_trade.status == Status.FILLED
    assert not OutboxEvent.objects.filter(
        event_type="trade.cancel_requested", payload__trade_id=str(done_trade.id)
    ).exists()
    assert log_messages(done_trade) == []
    notes = flash(response)
    assert any(str(open_trade.id) in n and "Cancel requested" in n for n in notes)
    assert any(str(done_trade.id) in n and "Skipped" in n for n in notes)


def test_reconcile_action_asks_only_for_submitted_trades(staff_client):
    customer, _ = make_customer("5000.00")
    sent = place(customer)
    Trade.objects.filter(pk=sent.pk).update(
        status=Status.SUBMITTED, submitted_at=timezone.now()
    )
    unsent = place(customer)
    response = post_action(staff_client, "trade", "reconcile_trades", [sent, unsent])
    assert response.status_code == 200

    requested = OutboxEvent.objects.filter(event_type="trade.reconcile_requested")
    assert [e.payload["trade_id"] for e in requested] == [str(sent.id)]
    assert requested[0].topic == topic_for_customer(customer.pk)
    assert sent.events.filter(
        kind="outbox", detail__event_type="trade.reconcile_requested"
    ).exists()
    (logged,) = log_messages(sent)
    assert "Reconciliation with the exchange requested by staff:ops" in logged
    assert log_messages(unsent) == []
    notes = flash(response)
    assert any(str(sent.id) in n and "Reconciliation requested" in n for n in notes)
    assert any(str(unsent.id) in n and "Skipped" in n for n in notes)


# --- Accounts -------------------------------------------------------------------


def test_account_page_shows_ledger_and_positions(staff_client):
    customer, _ = make_customer("100.00")
    fill(place(customer, quantity="2"))
    account = customer.account
    for i in range(LEDGER_INLINE_LIMIT):
        account_adjust(
            account=account, amount=Decimal("1"), reason=f"r{i}", operator="t"
        )
    response = staff_client.get(
        reverse("admin:broker_account_change", args=[account.pk])
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Adjust balance" in page
    assert "ledger entries (latest 50)" in page.lower()
    ledger_formset = next(
        f
        for f in response.context["inline_admin_formsets"]
        if f.opts.model is LedgerEntry
    )
    shown = [form.instance.pk for form in ledger_formset.formset.forms]
    newest = LedgerEntry.objects.filter(account=account).order_by("-id")
    assert shown == list(newest.values_list("id", flat=True)[:LEDGER_INLINE_LIMIT])
    assert newest.count() > LEDGER_INLINE_LIMIT
    assert "AAPL" in page  # the position inline


def test_adjust_balance_credits_cash_through_a_ledger_entry(staff_client):
    customer, _ = make_customer("100.00")
    account = customer.account
    url = reverse("admin:broker_account_adjust", args=[account.pk])
    assert staff_client.get(url).status_code == 200

    response = staff_client.post(url, {"amount": "25.50", "reason": "goodwill credit"})
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:broker_account_change", args=[account.pk]
    )
    account.refresh_from_db()
    assert account.cash == Decimal("125.50")
    entry = LedgerEntry.objects.filter(account=account).latest("id")
    assert entry.kind == LedgerEntry.Kind.ADJUSTMENT
    assert entry.amount == Decimal("25.50")
    assert "goodwill credit" in entry.memo and "ops" in entry.memo
    (logged,) = log_messages(account)
    assert "+25.50" in logged and "goodwill credit" in logged


def test_adjust_balance_requires_a_reason(staff_client):
    customer, _ = make_customer("100.00")
    entries = LedgerEntry.objects.count()
    url = reverse("admin:broker_account_adjust", args=[customer.account.pk])
    for reason in ["", "   "]:
        response = staff_client.post(url, {"amount": "5.00", "reason": reason})
        assert response.status_code == 200
        assert response.context["form"].errors["reason"]
    response = staff_client.post(url, {"amount": "5.001", "reason": "too precise"})
    assert response.context["form"].errors["amount"]
    response = staff_client.post(url, {"amount": "0", "reason": "nothing"})
    assert "cannot be zero" in response.content.decode()
    # Beyond any correction (and near the column's range): a form error, not a 500.
    for huge in ["1000000000.01", "-999999999999999999.99"]:
        response = staff_client.post(url, {"amount": huge, "reason": "typo"})
        assert response.status_code == 200
        assert response.context["form"].errors["amount"]
    assert LedgerEntry.objects.count() == entries
    assert LogEntry.objects.count() == 0


def test_adjust_balance_that_would_overdraw_is_refused_without_a_500(staff_client):
    customer, _ = make_customer("100.00")
    account = customer.account
    entries = LedgerEntry.objects.filter(account=account).count()
    url = reverse("admin:broker_account_adjust", args=[account.pk])
    response = staff_client.post(url, {"amount": "-100.01", "reason": "clawback"})
    assert response.status_code == 200
    assert "database refused" in response.content.decode()
    account.refresh_from_db()
    assert account.cash == Decimal("100.00")
    assert LedgerEntry.objects.filter(account=account).count() == entries
    assert LogEntry.objects.count() == 0
    # The page still works after the refused transaction.
    response = staff_client.post(url, {"amount": "-100.00", "reason": "clawback"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.cash == Decimal("0.00")


# --- Outbox, dashboard ----------------------------------------------------------


def test_outbox_list_shows_the_unpublished_lag(staff_client):
    customer, _ = make_customer()
    first, second = place(customer), place(customer)
    now = timezone.now()
    OutboxEvent.objects.filter(payload__trade_id=str(first.id)).update(
        created_at=now - timedelta(days=400)
    )
    OutboxEvent.objects.filter(payload__trade_id=str(second.id)).update(
        published_at=now
    )
    lag = ops.outbox_lag(now=now)
    assert lag["oldest_age_seconds"] == 400 * 86400
    url = reverse("admin:broker_outboxevent_changelist")
    response = staff_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Unpublished: {lag['unpublished']}" in page
    shown = response.context["outbox_lag"]["oldest_age_seconds"]
    assert 400 * 86400 <= shown < 400 * 86400 + 60
    assert f"oldest unpublished is {shown} s old" in page
    unpublished = staff_client.get(url, {"published": "no"}).context["cl"].result_list
    assert first.id in {uuid.UUID(e.payload["trade_id"]) for e in unpublished}
    assert second.id not in {uuid.UUID(e.payload["trade_id"]) for e in unpublished}


def test_dashboard_counts_recent_trades_outbox_lag_and_stuck_trades(staff_client):
    now = timezone.now()
    before = ops.dashboard(now=now)
    customer, _ = make_customer("5000.00")
    place(customer)
    place(customer)
    stuck = place(customer)
    long_ago = now - timedelta(days=300)
    Trade.objects.filter(pk=stuck.pk).update(created_at=long_ago, updated_at=long_ago)
    OutboxEvent.objects.filter(payload__trade_id=str(stuck.id)).update(
        created_at=long_ago
    )

    after = ops.dashboard(now=now)
    assert Counter(after["trades_last_hour"]) - Counter(
        before["trades_last_hour"]
    ) == Counter({"accepted": 2})
    assert after["outbox_unpublished"] - before["outbox_unpublished"] == 3
    assert after["outbox_oldest_age_seconds"] == 300 * 86400
    assert after["stuck_trades"] - before["stuck_trades"] == 1
    assert after["stuck_after_seconds"] == settings.STUCK_TRADE_SECONDS
    # Just inside the threshold is not stuck yet.
    Trade.objects.filter(pk=stuck.pk).update(
        updated_at=now - timedelta(seconds=settings.STUCK_TRADE_SECONDS - 1)
    )
    assert ops.dashboard(now=now)["stuck_trades"] == before["stuck_trades"]
    Trade.objects.filter(pk=stuck.pk).update(updated_at=long_ago)

    response = staff_client.get(reverse("admin:index"))
    assert response.status_code == 200
    shown = response.context["dashboard"]
    page = response.content.decode()
    assert 'id="ops-dashboard"' in page
    assert f'id="stuck-trades">{shown["stuck_trades"]}<' in page
    assert f">{shown['outbox_unpublished']} unpublished<" in page
    accepted = shown["trades_last_hour"]["accepted"]
    assert f'<span class="trades-accepted">accepted {accepted}</span>' in page
    stuck_list = staff_client.get(
        reverse("admin:broker_trade_changelist"), {"stuck": "yes"}
    )
    assert stuck.pk in {t.pk for t in stuck_list.context["cl"].result_list}


# --- Leadership -----------------------------------------------------------------


@pytest.fixture
def zk_root():
    """A ZooKeeper subtree of this test alone, removed afterwards."""
    root = f"{settings.ZOOKEEPER_ROOT}/admin-test-{uuid.uuid4().hex[:8]}"
    zk = KazooClient(hosts=settings.ZOOKEEPER_HOSTS, timeout=5)
    zk.start(timeout=5)
    try:
        with override_settings(ZOOKEEPER_ROOT=root):
            yield zk
    finally:
        zk.delete(root, recursive=True)
        if zk.exists(settings.ZOOKEEPER_ROOT) and not zk.get_children(
            settings.ZOOKEEPER_ROOT
        ):
            zk.delete(settings.ZOOKEEPER_ROOT)
        zk.stop()
        zk.close()


def test_leadership_page_shows_the_live_election(staff_client, zk_root):
    topic, other = all_topics()[:2]
    path = ops.election_path(topic)
    leader = zk_root.Election(path, "executor-a@host1").lock
    assert leader.acquire(blocking=False)  # the recipe's own node: it leads
    # A second contender queued behind it, named as the kazoo lock recipe does.
    zk_root.create(
        f"{path}/{uuid.uuid4().hex}__lock__",
        b"executor-b@host2",
        ephemeral=True,
        sequence=True,
    )
    topic_leader_claim(topic=topic, epoch=99, holder="executor-a@host1")
    ConsumerOffset.objects.create(topic=topic, partition=0, next_offset=1234)
    FixSession.objects.create(
        sender_comp_id="BROKER-0", topic=topic, next_out_seq=5678, next_in_seq=91
    )

    live = ops.leadership_live()
    assert live[topic] == ["executor-a@host1", "executor-b@host2"]
    assert live[other] == []
    assert set(live) == set(all_topics())
    assert not zk_root.exists(ops.election_path(other))  # reading creates nothing

    response = staff_client.get(reverse("admin:broker_topicleader_changelist"))
    assert response.status_code == 200
    assert response.context["zookeeper_reachable"] is True
    page = response.content.decode()
    assert "<strong>executor-a@host1</strong> (leader)" in page
    assert page.index("executor-a@host1</strong>") < page.index(
        "<li>executor-b@host2</li>"
    )
    assert "no contenders" in page
    assert "[0] 1234" in page and "BROKER-0: 5678 / 91" in page
    assert "ZooKeeper unreachable" not in page
    leader.release()


def test_leadership_page_renders_when_zookeeper_is_unreachable(
    staff_client, monkeypatch, caplog
):
    monkeypatch.setattr(ops, "ZOOKEEPER_TIMEOUT", 0.3)
    topic = all_topics()[0]
    topic_leader_claim(topic=topic, epoch=3, holder="executor-z")
    with (
        override_settings(ZOOKEEPER_HOSTS="127.0.0.1:1"),
        caplog.at_level(logging.WARNING, logger="broker.ops"),
    ):
        assert ops.leadership_live() is None
        response = staff_client.get(reverse("admin:broker_topicleader_changelist"))
    assert response.status_code == 200
    assert response.context["zookeeper_reachable"] is False
    page = response.content.decode()
    assert "ZooKeeper unreachable" in page
    assert "executor-z" in page  # the fence rows from PostgreSQL still show
    assert any("zookeeper unreachable" in r.getMessage() for r in caplog.records)


# --- API plumbing ---------------------------------------------------------------


def test_revoke_action_revokes_tokens_and_logs(staff_client):
    customer, _ = make_customer()
    token = ApiToken.objects.get(user=customer.user)
    response = post_action(staff_client, "apitoken", "revoke_tokens", [token])
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert log_messages(token) == ["Revoked by staff:ops."]
    assert any("Revoked 1 token" in n for n in flash(response))


def test_idempotency_record_page_hides_the_stored_body(staff_client):
    customer, _ = make_customer()
    record = IdempotencyRecord.objects.create(
        customer=customer,
        key="idem-1",
        fingerprint="0" * 64,
        response_status=201,
        response_content_type="application/json",
        response_body=b'{"secret": "customer-data-xyz"}',
    )
    url = reverse("admin:broker_idempotencyrecord_change", args=[record.pk])
    response = staff_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "customer-data-xyz" not in page
    assert "idem-1" in page


def test_ledger_is_read_only_even_for_superusers(staff_client):
    customer, _ = make_customer("10.00")
    entry = LedgerEntry.objects.filter(account=customer.account).first()
    url = reverse("admin:broker_ledgerentry_change", args=[entry.pk])
    response = staff_client.post(url, {"amount": "1000000"})
    assert response.status_code == 403
    assert Account.objects.get(pk=customer.account.pk).cash == Decimal("10.00")


def test_dead_letters_are_listed_with_their_count(admin_client):
    DeadLetter.objects.create(
        topic="trades.9", partition=0, offset=41, reason="undecodable: x", epoch=3
    )
    response = admin_client.get("/admin/broker/deadletter/")
    assert response.status_code == 200
    assert b"undecodable: x" in response.content
    assert b"1 dead-lettered messages in total" in response.content


def test_the_dashboard_raises_the_ledger_audit_flag(admin_client):
    from django.core.cache import cache

    from broker.jobs import AUDIT_CACHE_KEY

    cache.set(
        AUDIT_CACHE_KEY,
        {
            "checked_at": timezone.now(),
            "ok": False,
            "count": 1,
            "violations": ["account 7: cash 150.00 vs ledger 100.00"],
        },
        None,
    )
    try:
        page = admin_client.get("/admin/").content.decode()
        assert "MISMATCH: 1 violation(s)" in page
        assert "account 7: cash 150.00 vs ledger 100.00" in page
    finally:
        cache.delete(AUDIT_CACHE_KEY)


def test_a_quarantined_report_is_shown_raw_and_reviewed_by_ops(staff_client):
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    Trade.objects.filter(pk=trade.pk).update(review_reason="LastPx above the limit")
    message = QuarantinedMessage.objects.create(
        session="BROKER-1",
        seq=77,
        msg_type="8",
        trade=trade,
        reason="LastPx 5000 above the buy's limit 100",
        raw="8=FIX.4.4|9=12|35=8|31=5000|10=000|",
        epoch=9,
    )
    flagged = staff_client.get(
        reverse("admin:broker_trade_changelist"), {"review": "yes"}
    )
    assert trade.pk in {t.pk for t in flagged.context["cl"].result_list}
    page = staff_client.get(
        reverse("admin:broker_quarantinedmessage_change", args=[message.pk])
    ).content.decode()
    assert "31=5000" in page and "above the buy&#x27;s limit" in page

    post_action(staff_client, "quarantinedmessage", "mark_reviewed", [message])

    message.refresh_from_db()
    trade.refresh_from_db()
    assert message.reviewed_at is not None
    assert trade.review_reason == ""
    assert log_messages(message) == ["marked reviewed"]


def test_the_timeline_shows_what_was_sent_to_the_exchange():
    customer, _ = make_customer("5000.00")
    trade = place(customer)
    FixJournal.objects.create(
        session="BROKER-2",
        seq=31,
        msg_type="D",
        trade=trade,
        body=f"11={trade.id}",
        sending_time="20261204-10:00:00.000",
    )
    sent = [e for e in ops.trade_timeline(trade) if e.source == "fix"]
    assert [e.detail for e in sent] == ["NewOrderSingle #31 on BROKER-2"]
