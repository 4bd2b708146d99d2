import io
import json
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from broker.models import OutboxEvent, Trade
from broker.services.placement import trade_place
from broker.topics import all_topics
from executor.fencing import topic_leader_claim
from tests.factories import fixed_price, make_customer

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_create_customer_prints_its_id_and_a_working_token():
    line = json.loads(run("create_customer", "cli-alice", "--cash", "250.00"))
    assert set(line) == {"customer_id", "token"}
    with pytest.raises(CommandError, match="taken"):
        run("create_customer", "cli-alice", "--cash", "1")
    with pytest.raises(CommandError):
        run("create_customer", "cli-bob", "--cash", "-5")


def test_create_customer_takes_its_password_from_stdin_never_from_argv():
    # No option takes a value: a password on the command line is refused.
    for argv in (["--password"], ["--password-stdin"], ["--password-p"]):
        with pytest.raises(CommandError):
            run("create_customer", "cli-carl", *argv, "correct horse battery")
    assert not get_user_model().objects.filter(username="cli-carl").exists()
    line = io.StringIO()
    call_command(
        "create_customer",
        "cli-carl",
        "--password-stdin",
        stdin=io.StringIO("correct horse battery\n"),
        stdout=line,
    )
    user = get_user_model().objects.get(username="cli-carl")
    assert user.check_password("correct horse battery")
    assert json.loads(line.getvalue())["customer_id"] == user.customer.pk


def test_create_customer_refuses_a_weak_password_and_creates_nothing():
    for password in ["short", "password1234", "12345678901234", ""]:
        with pytest.raises(CommandError, match="password refused"):
            call_command(
                "create_customer",
                "cli-weak",
                "--password-stdin",
                stdin=io.StringIO(password + "\n"),
                stdout=io.StringIO(),
            )
    assert not get_user_model().objects.filter(username="cli-weak").exists()


def test_create_customer_prompts_for_the_password_twice(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["correct horse battery", "correct horse battery"])
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    run("create_customer", "cli-dora", "--password-prompt")
    user = get_user_model().objects.get(username="cli-dora")
    assert user.check_password("correct horse battery")

    answers = iter(["correct horse battery", "correct horse batterz"])
    with pytest.raises(CommandError, match="differ"):
        run("create_customer", "cli-erin", "--password-prompt")


def test_reconcile_enqueues_for_submitted_trades_only():
    customer, _ = make_customer("5000.00")
    trade = trade_place(
        customer=customer,
        symbol="AAPL",
        side="buy",
        quantity=Decimal("1"),
        order_type="market",
        price_source=fixed_price("10"),
    )
    assert "nothing to reconcile" in run("reconcile", str(trade.id))
    Trade.objects.filter(id=trade.id).update(
        status="submitted", submitted_at=trade.created_at
    )
    assert "reconcile requested" in run("reconcile", str(trade.id))
    assert OutboxEvent.objects.filter(
        event_type="trade.reconcile_requested", payload__trade_id=str(trade.id)
    ).exists()
    with pytest.raises(CommandError):
        run("reconcile", "not-a-uuid")


def test_leadership_lists_every_topic_with_its_fence():
    topic_leader_claim(topic=all_topics()[0], epoch=77, holder="executor-x")
    output = run("leadership")
    assert all(topic in output for topic in all_topics())
    assert "executor-x epoch 77" in output
