"""Four eyes on balance adjustments: up to ADMIN_ADJUSTMENT_APPROVAL_LIMIT one staff
member adjusts at once; above it the adjustment waits for another staff member,
whose approval alone posts it (once), with both names on the ledger memo and in
the admin log."""

import threading
import uuid
from decimal import Decimal

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.test import Client, override_settings
from django.urls import reverse

from broker.errors import AdjustmentAlreadyDecided, FourEyesRequired
from broker.models import Account, BalanceAdjustmentRequest, LedgerEntry
from broker.services.adjustments import (
    adjustment_request_approve,
    adjustment_request_create,
    adjustment_request_reject,
)
from tests.broker.test_admin import flash, post_action
from tests.factories import make_customer

Status = BalanceAdjustmentRequest.Status


def staff_user(name: str, *, superuser: bool = False):
    users = get_user_model().objects
    if superuser:
        return users.create_superuser(name, password="long-enough-password")
    user = users.create_user(name, password="long-enough-password", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="broker",
            codename__in=[
                "view_account",
                "change_account",
                "view_balanceadjustmentrequest",
            ],
        )
    )
    return user


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice(db):
    return staff_user("alice")


@pytest.fixture
def bob(db):
    return staff_user("bob")


def adjustments(account: Account):
    return LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.ADJUSTMENT)


def ask(client: Client, account: Account, amount: str, reason: str = "wire twice"):
    url = reverse("admin:broker_account_adjust", args=[account.pk])
    return client.post(url, {"amount": amount, "reason": reason})


def log_of(obj) -> list[tuple[str, int, str]]:
    return [
        (entry.user.get_username(), entry.action_flag, entry.change_message)
        for entry in LogEntry.objects.filter(
            object_id=str(obj.pk), content_type__model=obj._meta.model_name
        ).order_by("id")
    ]


@override_settings(ADMIN_ADJUSTMENT_APPROVAL_LIMIT=Decimal("1000.00"))
def test_up_to_the_limit_one_staff_member_adjusts_at_once(alice):
    customer, _ = make_customer("100.00")
    account = customer.account
    for amount in ["1000.00", "-1000.00"]:
        response = ask(client_of(alice), account, amount)
        assert response.status_code == 302
        assert response["Location"] == reverse(
            "admin:broker_account_change", args=[account.pk]
        )
    assert adjustments(account).count() == 2
    assert not BalanceAdjustmentRequest.objects.exists()


@override_settings(ADMIN_ADJUSTMENT_APPROVAL_LIMIT=Decimal("1000.00"))
def test_above_the_limit_nothing_moves_until_another_staff_member_approves(alice, bob):
    customer, _ = make_customer("100.00")
    account = customer.account
    response = ask(client_of(alice), account, "5000.00", "wire received twice")
    (pending,) = BalanceAdjustmentRequest.objects.all()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:broker_balanceadjustmentrequest_change", args=[pending.pk]
    )
    assert (pending.status, pending.amount) == (Status.PENDING, Decimal("5000.00"))
    assert pending.requested_by == alice
    account.refresh_from_db()
    assert account.cash == Decimal("100.00")
    assert not adjustments(account).exists()
    ((who, flag, message),) = log_of(pending)
    assert (who, flag) == ("alice", ADDITION) and "+5000.00" in message
    (requested,) = log_of(account)
    assert requested[0] == "alice" and f"#{pending.pk}" in requested[2]

    # Bob approves from the list: the entry is posted, naming both.
    bob_client = client_of(bob)
    response = post_action(
        bob_client, "balanceadjustmentrequest", "approve_requests", [pending]
    )
    assert "Approved and posted 1" in " ".join(flash(response))
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by) == (Status.APPROVED, bob)
    account.refresh_from_db()
    assert account.cash == Decimal("5100.00")
    (entry,) = adjustments(account)
    assert entry.amount == Decimal("5000.00")
    assert "wire received twice" in entry.memo
    assert "alice" in entry.memo and "approved by bob" in entry.memo
    assert f"#{pending.pk}" in entry.memo
    approved = log_of(account)[-1]
    assert approved[:2] == ("bob", CHANGE)
    assert "requested by alice" in approved[2] and "approved by bob" in approved[2]
    assert log_of(pending)[-1][:2] == ("bob", CHANGE)


@override_settings(ADMIN_ADJUSTMENT_APPROVAL_LIMIT=Decimal("1000.00"))
def test_the_requester_cannot_approve_or_reject_their_own(alice):
    customer, _ = make_customer("100.00")
    ask(client_of(alice), customer.account, "-1000.01")  # debits count too
    (pending,) = BalanceAdjustmentRequest.objects.all()
    for action in ["approve_requests", "reject_requests"]:
        response = post_action(
            client_of(alice), "balanceadjustmentrequest", action, [pending]
        )
        assert "another staff member" in " ".join(flash(response))
    pending.refresh_from_db()
    assert pending.status == Status.PENDING
    assert not adjustments(customer.account).exists()
    # Superusers included: four eyes is not a permission.
    root = staff_user("root", superuser=True)
    own = adjustment_request_create(
        account=customer.account, amount=Decimal("2000"), reason="x", requested_by=root
    )
    with pytest.raises(FourEyesRequired):
        adjustment_request_approve(request_id=own.pk, approver=root)
    # The database refuses it as well.
    with pytest.raises(IntegrityError), transaction.atomic():
        BalanceAdjustmentRequest.objects.filter(pk=own.pk).update(
            status=Status.APPROVED, decided_by=root, decided_at=own.requested_at
        )


def test_approving_twice_posts_once(alice, bob):
    carol = staff_user("carol")
    customer, _ = make_customer("100.00")
    pending = adjustment_request_create(
        account=customer.account,
        amount=Decimal("20000"),
        reason="correction",
        requested_by=alice,
    )
    adjustment_request_approve(request_id=pending.pk, approver=bob)
    with pytest.raises(AdjustmentAlreadyDecided):
        adjustment_request_approve(request_id=pending.pk, approver=bob)
    with pytest.raises(AdjustmentAlreadyDecided):
        adjustment_request_approve(request_id=pending.pk, approver=carol)
    with pytest.raises(AdjustmentAlreadyDecided):
        adjustment_request_reject(request_id=pending.pk, rejecter=carol)
    response = post_action(
        client_of(carol), "balanceadjustmentrequest", "approve_requests", [pending]
    )
    assert "approved already by bob" in " ".join(flash(response))
    assert adjustments(customer.account).count() == 1
    customer.account.refresh_from_db()
    assert customer.account.cash == Decimal("20100.00")


def test_concurrent_approvals_post_once(live_db):
    alice, bob, carol = (staff_user(f"{n}-{uuid.uuid4().hex[:8]}") for n in "abc")
    customer, _ = make_customer("100.00")
    pending = adjustment_request_create(
        account=customer.account,
        amount=Decimal("20000"),
        reason="race",
        requested_by=alice,
    )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(user) -> None:
        try:
            barrier.wait()
            adjustment_request_approve(request_id=pending.pk, approver=user)
            outcomes.append("approved")
        except AdjustmentAlreadyDecided:
            outcomes.append("already")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(u,)) for u in (bob, carol)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    close_old_connections()
    assert sorted(outcomes) == ["already", "approved"]
    assert adjustments(customer.account).count() == 1


def test_a_rejection_posts_nothing(alice, bob):
    customer, _ = make_customer("100.00")
    pending = adjustment_request_create(
        account=customer.account,
        amount=Decimal("-90000"),
        reason="x",
        requested_by=alice,
    )
    response = post_action(
        client_of(bob), "balanceadjustmentrequest", "reject_requests", [pending]
    )
    assert "Rejected 1" in " ".join(flash(response))
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by) == (Status.REJECTED, bob)
    assert not adjustments(customer.account).exists()
    assert "not made" in log_of(customer.account)[-1][2]
    with pytest.raises(AdjustmentAlreadyDecided):
        adjustment_request_approve(request_id=pending.pk, approver=bob)


def test_an_approval_the_ledger_refuses_leaves_the_request_pending(alice, bob):
    customer, _ = make_customer("100.00")
    pending = adjustment_request_create(
        account=customer.account,
        amount=Decimal("-50000"),
        reason="x",
        requested_by=alice,
    )
    response = post_action(
        client_of(bob), "balanceadjustmentrequest", "approve_requests", [pending]
    )
    assert response.status_code == 200
    assert "database refused" in " ".join(flash(response))
    pending.refresh_from_db()
    assert pending.status == Status.PENDING and pending.decided_by is None
    assert not adjustments(customer.account).exists()
    assert log_of(pending) == []


def test_view_only_staff_cannot_decide(alice):
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="broker", codename__startswith="view_"
        )
    )
    customer, _ = make_customer("100.00")
    pending = adjustment_request_create(
        account=customer.account,
        amount=Decimal("20000"),
        reason="x",
        requested_by=alice,
    )
    client = client_of(viewer)
    page = client.get(reverse("admin:broker_balanceadjustmentrequest_changelist"))
    assert page.status_code == 200
    assert "approve_requests" not in page.content.decode()
    post_action(client, "balanceadjustmentrequest", "approve_requests", [pending])
    pending.refresh_from_db()
    assert pending.status == Status.PENDING


def test_the_default_limit_is_ten_thousand(alice):
    customer, _ = make_customer("100.00")
    assert ask(client_of(alice), customer.account, "10000.00").status_code == 302
    assert adjustments(customer.account).count() == 1
    ask(client_of(alice), customer.account, "10000.01")
    assert adjustments(customer.account).count() == 1
    (pending,) = BalanceAdjustmentRequest.objects.filter(account=customer.account)
    assert pending.amount == Decimal("10000.01")
