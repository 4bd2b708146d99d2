from datetime import timedelta
from decimal import Decimal
from itertools import product

import pytest
from django.utils import timezone

from broker.models import Trade, TradeEvent
from broker.services.placement import trade_place
from broker.services.transitions import (
    ALLOWED,
    RECONCILABLE,
    TERMINAL,
    IllegalTransition,
    is_reconcilable,
    stuck,
    stuck_after,
    trade_transition,
)
from tests.factories import fixed_price, make_customer

Status = Trade.Status
PAIRS = list(product(Status.values, Status.values))


def test_terminal_states_are_exactly_the_four_final_ones():
    assert TERMINAL == {"filled", "canceled", "rejected", "expired"}


@pytest.fixture
def trade(db):
    customer, _ = make_customer("10000.00")
    return trade_place(
        customer=customer,
        symbol="AAPL",
        side="buy",
        quantity=Decimal("1"),
        order_type="market",
        price_source=fixed_price("10.00"),
    )


@pytest.mark.parametrize(("current", "target"), PAIRS)
def test_every_transition_is_allowed_or_refused_by_the_table(trade, current, target):
    Trade.objects.filter(id=trade.id).update(status=current)
    events_before = TradeEvent.objects.filter(trade=trade).count()
    if target in ALLOWED[current]:
        assert trade_transition(
            trade_id=trade.id, from_status=current, to_status=target
        )
        trade.refresh_from_db()
        assert trade.status == target
        assert TradeEvent.objects.filter(trade=trade).count() == events_before + 1
    else:
        with pytest.raises(IllegalTransition):
            trade_transition(trade_id=trade.id, from_status=current, to_status=target)
        trade.refresh_from_db()
        assert trade.status == current


def test_a_transition_from_a_status_the_trade_has_left_is_a_no_op(trade):
    assert trade_transition(
        trade_id=trade.id, from_status="accepted", to_status="submitted"
    )
    # A replay of the same step finds the trade elsewhere and changes nothing.
    assert not trade_transition(
        trade_id=trade.id, from_status="accepted", to_status="submitted"
    )
    assert not trade_transition(
        trade_id=trade.id, from_status="accepted", to_status="rejected"
    )
    trade.refresh_from_db()
    assert trade.status == "submitted"


@pytest.mark.parametrize("status", Status.values)
@pytest.mark.parametrize("sent", [True, False])
def test_reconcilable_means_the_same_in_a_query_and_in_memory(trade, status, sent):
    """One rule, two forms: the job's query and the admin's, the command's and the
    executor's check must never disagree on a trade."""
    Trade.objects.filter(pk=trade.pk).update(
        status=status, submitted_at=timezone.now() if sent else None
    )
    trade.refresh_from_db()
    in_query = Trade.objects.filter(RECONCILABLE, pk=trade.pk).exists()
    assert is_reconcilable(trade) == in_query
    # Never before it was sent, never once finished.
    if status == Status.ACCEPTED or status in TERMINAL:
        assert not in_query


def test_stuck_is_one_threshold_for_the_dashboard_and_the_job(trade, settings):
    settings.STUCK_TRADE_SECONDS = 60
    now = timezone.now()
    Trade.objects.filter(pk=trade.pk).update(updated_at=now - timedelta(seconds=59))
    assert not Trade.objects.filter(stuck(now=now), pk=trade.pk).exists()
    Trade.objects.filter(pk=trade.pk).update(updated_at=now - timedelta(seconds=61))
    assert Trade.objects.filter(stuck(now=now), pk=trade.pk).exists()
    assert stuck_after() == timedelta(seconds=60)
    Trade.objects.filter(pk=trade.pk).update(status=Status.FILLED)
    assert not Trade.objects.filter(stuck(now=now), pk=trade.pk).exists()
