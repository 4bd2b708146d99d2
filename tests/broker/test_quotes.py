"""The api's per-process price cache (broker/quotes.py) is bounded: listed symbols
in an LRU, unlisted ones in their own smaller one and only briefly."""

from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.test import override_settings

from broker import quotes
from broker.exchange_client import Quote


class CountingExchange:
    """The exchange's quotes at the boundary: lists ``listed``, counts asks."""

    def __init__(self, listed: set[str]) -> None:
        self.listed = listed
        self.asks: list[str] = []

    def quote(self, symbol: str) -> Quote | None:
        self.asks.append(symbol)
        if symbol not in self.listed:
            return None
        price = Decimal("10")
        return Quote(symbol=symbol, bid=price, ask=price, last=price)


@pytest.fixture
def exchange(monkeypatch):
    fake = CountingExchange({"AAPL", "MSFT"})
    monkeypatch.setattr(quotes, "quote", fake.quote)
    monkeypatch.setattr(quotes, "_listed", quotes.PriceCache(4))
    monkeypatch.setattr(quotes, "_unlisted", quotes.PriceCache(8))
    return fake


def made_up(n: int) -> str:
    """A ticker-shaped symbol nobody lists."""
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("A") + r) + letters
    return "Z" + letters


@override_settings(QUOTE_MAX_AGE_SECONDS=60)
def test_made_up_symbols_neither_grow_the_cache_nor_evict_listed_prices(exchange):
    assert quotes.last_price("AAPL") == Decimal("10")
    for n in range(5000):
        assert quotes.last_price(made_up(n)) is None
    assert len(quotes._unlisted) == quotes._unlisted.capacity
    assert len(quotes._listed) == 1
    asks = len(exchange.asks)
    assert quotes.last_price("AAPL") == Decimal("10")
    assert len(exchange.asks) == asks, "the listed price was evicted"


@override_settings(QUOTE_MAX_AGE_SECONDS=60)
def test_the_listed_cache_keeps_the_most_recently_used_symbols(exchange):
    exchange.listed |= {"A", "B", "C", "D", "E"}
    for symbol in ["A", "B", "C", "D"]:
        quotes.last_price(symbol)
    quotes.last_price("A")  # used again: B is now the least recent
    quotes.last_price("E")
    assert len(quotes._listed) == 4
    exchange.asks.clear()
    for symbol in ["A", "C", "D", "E"]:
        quotes.last_price(symbol)
    assert exchange.asks == []
    quotes.last_price("B")
    assert exchange.asks == ["B"]


@override_settings(QUOTE_MAX_AGE_SECONDS=60)
def test_an_unlisted_symbol_is_asked_again_after_a_short_while(exchange, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(quotes, "time", SimpleNamespace(monotonic=lambda: now[0]))
    assert quotes.last_price("NEWCO") is None
    assert quotes.last_price("NEWCO") is None
    assert exchange.asks == ["NEWCO"]
    # Listed meanwhile: seen once the short unlisted age has passed, not after
    # the listed prices' 60 s.
    exchange.listed.add("NEWCO")
    now[0] += quotes.UNLISTED_MAX_AGE_SECONDS
    assert quotes.last_price("NEWCO") == Decimal("10")
    assert len(quotes._unlisted) == 0 and len(quotes._listed) == 1


def test_the_default_bounds_are_what_the_module_promises():
    assert quotes._listed.capacity == quotes.LISTED_CACHE_SIZE
    assert quotes._unlisted.capacity == quotes.UNLISTED_CACHE_SIZE
    assert quotes.UNLISTED_CACHE_SIZE < quotes.LISTED_CACHE_SIZE
