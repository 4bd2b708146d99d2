"""Quote random walk: deterministic, positive, two decimals, sane spread."""

import threading
from decimal import Decimal

from exchange_mock.quotes import (
    CENT,
    DEFAULT_PRICES,
    QuoteBook,
    QuoteTicker,
    make_quote,
)

REQUIRED_SYMBOLS = {"AAPL", "MSFT", "GOOG", "AMZN", "TSLA", "NVDA", "META", "NFLX"}


def test_lists_the_required_symbols():
    assert set(QuoteBook().symbols) >= REQUIRED_SYMBOLS


def test_starts_at_the_configured_prices():
    book = QuoteBook(seed=1)
    assert book.tick == 0
    for symbol, price in DEFAULT_PRICES.items():
        assert book.get(symbol).last == price


def test_same_seed_and_tick_count_give_the_same_quotes():
    a, b = QuoteBook(seed=7), QuoteBook(seed=7)
    a.step(50)
    for _ in range(50):
        b.step()
    for symbol in a.symbols:
        qa, qb = a.get(symbol), b.get(symbol)
        assert (qa.bid, qa.ask, qa.last, qa.tick) == (qb.bid, qb.ask, qb.last, 50)


def test_different_seeds_diverge():
    a, b = QuoteBook(seed=1), QuoteBook(seed=2)
    a.step(200)
    b.step(200)
    assert [a.get(s).last for s in a.symbols] != [b.get(s).last for s in b.symbols]


def test_walk_moves_in_small_steps():
    book = QuoteBook(seed=3)
    before = book.get("AAPL").last
    book.step()
    after = book.get("AAPL").last
    # sigma 0.05 %: one step is far below 1 %.
    assert abs(after - before) / before < Decimal("0.01")
    book.step(500)
    assert book.get("AAPL").last != before


def test_prices_are_cents_positive_and_bid_below_ask():
    book = QuoteBook(seed=11)
    for _ in range(300):
        for quote in book.step().values():
            for price in (quote.bid, quote.ask, quote.last):
                assert price > 0
                assert price == price.quantize(CENT)
            assert quote.bid < quote.last < quote.ask
            assert quote.ask - quote.bid >= CENT


def test_spread_is_proportional_with_a_floor():
    now = QuoteBook().get("AAPL").timestamp
    wide = make_quote("X", Decimal("1000.00"), now, 0)
    assert (wide.bid, wide.ask) == (Decimal("999.90"), Decimal("1000.10"))
    cheap = make_quote("Y", Decimal("1.00"), now, 0)
    assert (cheap.bid, cheap.ask) == (Decimal("0.99"), Decimal("1.01"))


def test_never_reaches_zero():
    book = QuoteBook(seed=5, prices={"PENNY": Decimal("1.00")})
    book.step(5000)
    quote = book.get("PENNY")
    assert quote.bid > 0
    assert quote.last >= Decimal("1.00")


def test_unknown_symbol_is_none():
    assert QuoteBook().get("NOPE") is None
    assert not QuoteBook().has("NOPE")


def test_quote_json_uses_strings():
    body = QuoteBook().get("MSFT").to_json()
    assert body["symbol"] == "MSFT"
    for key in ("bid", "ask", "last"):
        assert isinstance(body[key], str)
        Decimal(body[key])
    assert body["timestamp"].endswith("Z")


def test_listeners_get_every_step():
    book = QuoteBook(seed=1)
    seen = []
    book.subscribe(lambda quotes: seen.append(quotes["AAPL"].tick))
    book.step()
    book.step(3)
    assert seen == [1, 4]


def test_concurrent_steps_and_reads_are_consistent():
    book = QuoteBook(seed=9)
    errors = []

    def read():
        for _ in range(2000):
            quote = book.get("TSLA")
            if not quote.bid < quote.ask:
                errors.append(quote)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for _ in range(200):
        book.step()
    for thread in readers:
        thread.join()
    assert not errors
    assert book.tick == 200


def test_ticker_steps_and_stops():
    book = QuoteBook(seed=1)
    moved = threading.Event()
    book.subscribe(lambda quotes: moved.set())
    ticker = QuoteTicker(book, 0.01)
    ticker.start()
    try:
        assert moved.wait(5)
    finally:
        ticker.stop()
    ticks = book.tick
    assert ticks >= 1


def test_ticker_with_zero_interval_freezes_quotes():
    book = QuoteBook(seed=1)
    ticker = QuoteTicker(book, 0)
    ticker.start()
    ticker.stop()
    assert book.tick == 0
