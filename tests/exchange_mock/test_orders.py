"""Order validation, market matching on arrival, and the engine's dedupe by
client_order_id."""

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from exchange_mock.engine import (
    DuplicateOrderConflict,
    Exchange,
    UnknownSymbolError,
)
from exchange_mock.matching import on_arrival
from exchange_mock.orders import (
    Order,
    OrderRequest,
    OrderValidationError,
    format_decimal,
    format_price,
    parse_order_request,
)
from exchange_mock.quotes import QuoteBook, make_quote
from exchange_mock.store import OrderStore

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
QUOTE = make_quote("AAPL", Decimal("190.00"), NOW, 0)  # bid 189.98, ask 190.02


def body(**overrides):
    base = {
        "client_order_id": "c-1",
        "symbol": "AAPL",
        "side": "buy",
        "quantity": "10",
        "type": "market",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


def request(**overrides) -> OrderRequest:
    return parse_order_request(body(**overrides))


def match_market(request, quote, order_id, now) -> Order:
    """The order as it stands right after its arrival at an open market."""
    order = Order.accept(request, order_id, "default", now)
    return on_arrival(order, quote, True, now)[-1].order


@pytest.fixture
def exchange():
    store = OrderStore(":memory:")
    yield Exchange(QuoteBook(seed=42), store, clock=lambda: NOW)
    store.close()


# --- validation ---


def test_parses_a_valid_order():
    parsed = request(quantity="1.500000", collar_price="191.5")
    assert parsed == OrderRequest(
        "c-1", "AAPL", "buy", Decimal("1.5"), "market", Decimal("191.5")
    )


def test_collar_price_is_optional_and_may_be_null():
    assert request().collar_price is None
    assert request(collar_price=None).collar_price is None


@pytest.mark.parametrize(
    "quantity",
    [
        "0",
        "0.000",
        "-1",
        "-0.5",
        "1.0000001",
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        "1e999999",
        "9" * 41,
        "1000000001",
        "1e-7",
        "",
        " 1",
        "1 ",
        "1_000",
        "0x10",
        "1,5",
        "abc",
        "1.2.3",
        12,
        1.5,
        Decimal("1.5"),
        True,
        [],
        {},
    ],
)
def test_refuses_bad_quantities(quantity):
    with pytest.raises(OrderValidationError) as info:
        parse_order_request(body(quantity=quantity))
    assert list(info.value.errors) == ["quantity"]


@pytest.mark.parametrize("quantity", ["1", "0.000001", "1000000000", "1E+2", ".5"])
def test_accepts_good_quantities(quantity):
    assert request(quantity=quantity).quantity == Decimal(quantity)


@pytest.mark.parametrize("collar", ["0", "-1", "NaN", "1.0000001", 191, "x"])
def test_refuses_bad_collar_prices(collar):
    with pytest.raises(OrderValidationError) as info:
        parse_order_request(body(collar_price=collar))
    assert list(info.value.errors) == ["collar_price"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_order_id", ""),
        ("client_order_id", "x" * 65),
        ("client_order_id", "has space"),
        ("client_order_id", "a/b"),
        ("client_order_id", 123),
        ("symbol", ""),
        ("symbol", 5),
        ("symbol", "X" * 17),
        ("side", "BUY"),
        ("side", "short"),
        ("type", "stop"),
        ("type", 1),
        ("time_in_force", "fok"),
        ("time_in_force", "DAY"),
        ("time_in_force", "gtc"),  # market orders are day orders
        ("limit_price", "190"),  # not on a market order
    ],
)
def test_refuses_bad_fields(field, value):
    with pytest.raises(OrderValidationError) as info:
        parse_order_request(body(**{field: value}))
    assert list(info.value.errors) == [field]


def test_reports_every_missing_and_unknown_field():
    with pytest.raises(OrderValidationError) as info:
        parse_order_request({"collar": "1"})
    assert set(info.value.errors) == {
        "collar",
        "client_order_id",
        "symbol",
        "side",
        "quantity",
        "type",
    }
    assert info.value.errors["collar"] == ["unknown field"]


@pytest.mark.parametrize("payload", [None, [], "x", 1])
def test_refuses_a_body_that_is_not_an_object(payload):
    with pytest.raises(OrderValidationError) as info:
        parse_order_request(payload)
    assert "body" in info.value.errors


def test_parses_a_limit_order_with_defaults():
    parsed = request(type="limit", limit_price="189.1234", quantity="0.5")
    assert parsed.limit_price == Decimal("189.1234")
    assert parsed.time_in_force == "day"
    assert request(type="limit", limit_price="1", time_in_force="gtc").time_in_force
    assert request(time_in_force="ioc").time_in_force == "ioc"
    assert request(time_in_force=None).time_in_force == "day"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "limit"}, "limit_price"),  # required
        ({"type": "limit", "limit_price": None}, "limit_price"),
        ({"type": "limit", "limit_price": "189.12345"}, "limit_price"),  # > 4 dp
        ({"type": "limit", "limit_price": "0"}, "limit_price"),
        ({"type": "limit", "limit_price": 189}, "limit_price"),
        ({"type": "limit", "limit_price": "1", "collar_price": "2"}, "collar_price"),
    ],
)
def test_refuses_bad_limit_orders(change, field):
    with pytest.raises(OrderValidationError) as info:
        parse_order_request(body(**change))
    assert list(info.value.errors) == [field]


def test_limit_and_time_in_force_are_part_of_a_resend(exchange):
    exchange.submit(request(type="limit", limit_price="150", time_in_force="gtc"))
    again = exchange.submit(
        request(type="limit", limit_price="150.0000", time_in_force="gtc")
    )
    assert not again.created
    for change in [{"limit_price": "151"}, {"time_in_force": "day"}]:
        params = {"type": "limit", "limit_price": "150", "time_in_force": "gtc"}
        with pytest.raises(DuplicateOrderConflict):
            exchange.submit(request(**{**params, **change}))


def test_client_order_id_of_64_characters_is_fine():
    assert request(client_order_id="a" * 64).client_order_id == "a" * 64


# --- matching ---


def test_buy_fills_in_full_at_the_ask():
    order = match_market(request(side="buy"), QUOTE, "EX-000001", NOW)
    assert order.status == "filled"
    assert order.reject_reason is None
    [execution] = order.executions
    assert execution.price == QUOTE.ask == Decimal("190.02")
    assert execution.quantity == order.filled_quantity == Decimal("10")
    assert execution.exec_id == "EX-000001-1"
    assert order.average_price == QUOTE.ask


def test_sell_fills_in_full_at_the_bid():
    order = match_market(request(side="sell"), QUOTE, "EX-000002", NOW)
    assert order.status == "filled"
    assert order.executions[0].price == QUOTE.bid == Decimal("189.98")


@pytest.mark.parametrize(
    ("side", "collar", "status"),
    [
        ("buy", "190.01", "rejected"),  # ask 190.02 above the collar
        ("buy", "190.02", "filled"),  # at the collar is fine
        ("buy", "200", "filled"),
        ("sell", "189.99", "rejected"),  # bid 189.98 below the collar
        ("sell", "189.98", "filled"),
        ("sell", "100", "filled"),
    ],
)
def test_collar(side, collar, status):
    order = match_market(request(side=side, collar_price=collar), QUOTE, "EX-1", NOW)
    assert order.status == status
    if status == "rejected":
        assert order.reject_reason == "price_outside_collar"
        assert order.executions == ()
        assert order.filled_quantity == 0
        assert order.average_price is None


def test_order_json_uses_strings_and_nulls():
    order = match_market(request(quantity="2.500000"), QUOTE, "EX-000001", NOW)
    assert order.to_json() == {
        "client_order_id": "c-1",
        "order_id": "EX-000001",
        "session_id": "default",
        "symbol": "AAPL",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
        "quantity": "2.5",
        "limit_price": None,
        "collar_price": None,
        "status": "filled",
        "filled_quantity": "2.5",
        "leaves_quantity": "0",
        "average_price": "190.02",
        "reject_reason": None,
        "executions": [
            {
                "exec_id": "EX-000001-1",
                "quantity": "2.5",
                "price": "190.02",
                "timestamp": "2024-05-01T12:00:00.000000Z",
            }
        ],
        "created_at": "2024-05-01T12:00:00.000000Z",
        "updated_at": "2024-05-01T12:00:00.000000Z",
    }


def test_formatting():
    assert format_decimal(Decimal("10.000000")) == "10"
    assert format_decimal(Decimal("1E+2")) == "100"
    assert format_decimal(Decimal("0.000001")) == "0.000001"
    assert format_price(Decimal("190")) == "190.00"
    assert format_price(Decimal("190.1234")) == "190.1234"


# --- engine: idempotency by client_order_id ---


def test_new_order_is_created_and_filled(exchange):
    result = exchange.submit(request())
    assert result.created
    assert result.order.order_id == "EX-000001"
    assert result.order.status == "filled"
    assert result.order.executions[0].price == exchange.quotes.get("AAPL").ask


def test_resend_returns_the_same_order_without_a_second_execution(exchange):
    first = exchange.submit(request(quantity="10")).order
    exchange.quotes.step(100)  # the market moved: a re-match would differ
    again = exchange.submit(request(quantity="10.000000"))
    assert not again.created
    assert again.order == first
    assert len(exchange.list_orders()) == 1


def test_resend_of_a_collar_rejection_returns_the_rejection(exchange):
    first = exchange.submit(request(collar_price="1.00")).order
    assert first.status == "rejected"
    again = exchange.submit(request(collar_price="1")).order
    assert again == first
    assert again.executions == ()


@pytest.mark.parametrize(
    "change",
    [
        {"side": "sell"},
        {"quantity": "11"},
        {"symbol": "MSFT"},
        {"collar_price": "500"},
    ],
)
def test_same_id_other_parameters_is_a_conflict(exchange, change):
    first = exchange.submit(request()).order
    with pytest.raises(DuplicateOrderConflict) as info:
        exchange.submit(request(**change))
    assert info.value.existing == first
    assert len(exchange.list_orders()) == 1


def test_unknown_symbol_is_refused_and_not_stored(exchange):
    with pytest.raises(UnknownSymbolError):
        exchange.submit(request(symbol="NOPE"))
    assert exchange.list_orders() == []
    assert exchange.get_order("c-1") is None


def test_order_ids_are_sequential_and_listed_in_acceptance_order(exchange):
    for n in range(3):
        exchange.submit(request(client_order_id=f"c-{n}", side="sell"))
    orders = exchange.list_orders()
    assert [o.order_id for o in orders] == ["EX-000001", "EX-000002", "EX-000003"]
    assert [o.client_order_id for o in orders] == ["c-0", "c-1", "c-2"]


def test_concurrent_duplicates_make_exactly_one_order(exchange):
    barrier = threading.Barrier(16)
    results = []

    def submit():
        barrier.wait()
        results.append(exchange.submit(request(client_order_id="race")))

    threads = [threading.Thread(target=submit) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.created for r in results) == 1
    assert {r.order.order_id for r in results} == {"EX-000001"}
    assert len(exchange.list_orders()) == 1
    assert len(exchange.list_orders()[0].executions) == 1
