from decimal import Decimal
from itertools import product

import pytest

from broker.models import Trade, TradeEvent
from broker.services.placement import trade_place
from broker.services.transitions import (
    ALLOWED,
    TERMINAL,
    IllegalTransition,
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
