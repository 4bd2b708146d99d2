"""API tests run in-process (DRF test client) against the real PostgreSQL and Redis;
the exchange's quotes are faked at their boundary."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from broker import quotes
from broker.exchange_client import Quote


def fake_quote(symbol: str) -> Quote | None:
    if symbol == "NOPE":
        return None
    return Quote(
        symbol=symbol, bid=Decimal("99.99"), ask=Decimal("100.01"), last=Decimal("100")
    )


@pytest.fixture(autouse=True)
def quotes_at_100(monkeypatch):
    monkeypatch.setattr(quotes, "quote", fake_quote)


def client_for(token: str | None) -> APIClient:
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def order(**overrides) -> dict:
    body = {"symbol": "AAPL", "side": "buy", "quantity": "10", "type": "market"}
    body.update(overrides)
    return body
