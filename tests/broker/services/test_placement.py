from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, connections

from broker.audit import ledger_discrepancies
from broker.errors import (
    InsufficientBuyingPower,
    InsufficientShares,
    InvalidOrder,
    UnknownSymbol,
)
from broker.models import Account, LedgerEntry, OutboxEvent, Position, Trade
from broker.services.placement import market_buy_hold, trade_place
from broker.topics import topic_for_customer
from tests.factories import fixed_price, give_shares, make_customer, trades_of


def place(customer, side="buy", quantity="10", symbol="AAPL", price="100.00"):
    return trade_place(
        customer=customer,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        order_type="market",
        price_source=fixed_price(price),
    )


def written_by(customer) -> dict:
    return {
        "trades": trades_of(customer).count(),
        "ledger": LedgerEntry.objects.filter(account__customer=customer).count(),
        "outbox": OutboxEvent.objects.filter(key=str(customer.pk)).count(),
    }


def test_market_buy_hold_rounds_up_so_a_fill_at_the_collar_is_covered():
    collar_price, hold = market_buy_hold(
        quantity=Decimal("3"), last_price=Decimal("33.333"), collar=Decimal("0.05")
    )
    assert collar_price == Decimal("34.9997")  # 34.99965 rounded up to the tick
    assert hold == Decimal("105.00")
    assert Decimal("3") * collar_price <= hold


@pytest.mark.django_db
def test_buy_writes_trade_hold_ledger_and_outbox_together():
    customer, _ = make_customer("5000.00")
    trade = place(customer, quantity="10", price="100.00")

    account = Account.objects.get(customer=customer)
    assert trade.status == Trade.Status.ACCEPTED
    assert trade.collar_price == Decimal("105.0000")
    assert trade.hold_remaining == Decimal("1050.00")
    assert account.cash == Decimal("5000.00")
    assert account.reserved_cash == Decimal("1050.00")
    hold = LedgerEntry.objects.get(trade=trade)
    assert (hold.kind, hold.bucket, hold.amount) == ("hold", "reserved_cash", 1050)
    event = OutboxEvent.objects.get(key=str(customer.pk))
    assert event.event_type == "trade.placed"
    assert event.topic == topic_for_customer(customer.pk)
    assert event.payload == {"trade_id": str(trade.id), "customer_id": customer.pk}
    assert event.published_at is None
    assert ledger_discrepancies(account_ids=[account.pk]) == []


@pytest.mark.django_db
def test_buy_beyond_buying_power_is_refused_and_writes_nothing():
    customer, _ = make_customer("1000.00")
    before = written_by(customer)
    with pytest.raises(InsufficientBuyingPower):
        place(customer, quantity="10", price="100.00")  # needs 1050 held
    assert written_by(customer) == before
    assert Account.objects.get(customer=customer).reserved_cash == 0


@pytest.mark.django_db
def test_sell_reserves_shares_and_short_selling_is_refused():
    customer, _ = make_customer("0")
    give_shares(customer, "MSFT", "5")
    trade = place(customer, side="sell", quantity="3", symbol="MSFT")
    position = Position.objects.get(account__customer=customer, symbol="MSFT")
    assert position.reserved_quantity == Decimal("3")
    assert trade.collar_price is None

    before = written_by(customer)
    with pytest.raises(InsufficientShares):
        place(customer, side="sell", quantity="3", symbol="MSFT")  # only 2 free
    with pytest.raises(InsufficientShares):
        place(customer, side="sell", quantity="1", symbol="TSLA")  # none held
    assert written_by(customer) == before


@pytest.mark.django_db
def test_unknown_symbol_is_refused_before_anything_is_written():
    customer, _ = make_customer()
    before = written_by(customer)
    with pytest.raises(UnknownSymbol):
        place(customer, symbol="NOPE")
    assert written_by(customer) == before


@pytest.mark.django_db
def test_failure_after_the_trade_insert_leaves_nothing_behind():
    """A real database fault injected after the trade row is written (the outbox
    insert fails) rolls back the trade, the hold and the ledger entries too."""
    customer, _ = make_customer("5000.00")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION fail_outbox() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'injected outbox failure'; END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER fail_outbox BEFORE INSERT ON broker_outboxevent
                FOR EACH ROW EXECUTE FUNCTION fail_outbox();
            """
        )
    before = written_by(customer)
    with pytest.raises(Exception, match="injected outbox failure"):
        place(customer)
    assert written_by(customer) == before
    account = Account.objects.get(customer=customer)
    assert (account.cash, account.reserved_cash) == (Decimal("5000.00"), 0)


def test_concurrent_buys_never_overspend(live_db):
    """20 real threads, each with its own PostgreSQL connection, race to buy on one
    account that can afford exactly 7 of the orders.

    Limit orders far below the market: if executors of an integration test are
    running in the same session they send these to the exchange, where they rest
    and keep their holds (a settled or rejected order would free money mid-race)."""
    customer, _ = make_customer("7350.00")  # 7 x (1000 x 1.05)

    def attempt(_):
        try:
            trade_place(
                customer=customer,
                symbol="AAPL",
                side="buy",
                quantity=Decimal("1000"),
                order_type="limit",
                limit_price=Decimal("1.05"),
                time_in_force="gtc",
                price_source=fixed_price("100.00"),
            )
            return "accepted"
        except InsufficientBuyingPower:
            return "refused"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))

    assert outcomes.count("accepted") == 7
    assert outcomes.count("refused") == 13
    account = Account.objects.get(customer=customer)
    assert account.reserved_cash == Decimal("7350.00")
    assert account.reserved_cash <= account.cash
    assert trades_of(customer).count() == 7
    assert ledger_discrepancies(account_ids=[account.pk]) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"order_type": "limit"}, "limit_price"),
        (
            {"order_type": "limit", "limit_price": Decimal("10"), "quantity": "1.5"},
            "quantity",
        ),
        ({"order_type": "market", "limit_price": Decimal("10")}, "limit_price"),
        ({"order_type": "market", "time_in_force": "gtc"}, "time_in_force"),
    ],
)
def test_placement_itself_refuses_an_order_the_api_would_refuse(db, fields, field):
    """Any caller of trade_place, not only the API, gets the order-shape rules."""
    customer, _ = make_customer("10000.00")
    fields = {"quantity": "1", "time_in_force": "day", **fields}
    with pytest.raises(InvalidOrder) as refused:
        trade_place(
            customer=customer,
            symbol="AAPL",
            side="buy",
            quantity=Decimal(fields.pop("quantity")),
            order_type=fields.pop("order_type"),
            price_source=fixed_price("100.00"),
            **fields,
        )
    assert field in refused.value.errors
    assert not Trade.objects.filter(account__customer=customer).exists()
