from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connections

from broker.models import IdempotencyRecord, LedgerEntry, OutboxEvent
from broker.services.customers import account_deposit
from tests.broker.api.conftest import client_for, order
from tests.factories import make_customer, trades_of


def post(token, body, key, path="/api/v1/trades"):
    return client_for(token).post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_a_retry_replays_the_first_response_byte_for_byte_and_writes_nothing():
    customer, token = make_customer("5000.00")
    first = post(token, order(quantity="2"), "key-1")
    writes = (
        trades_of(customer).count(),
        LedgerEntry.objects.filter(account__customer=customer).count(),
        OutboxEvent.objects.filter(key=str(customer.pk)).count(),
    )
    again = post(
        token,
        {"type": "market", "quantity": "2", "side": "buy", "symbol": "AAPL"},
        "key-1",
    )  # same content, other layout

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again["Idempotent-Replayed"] == "true"
    assert writes == (
        trades_of(customer).count(),
        LedgerEntry.objects.filter(account__customer=customer).count(),
        OutboxEvent.objects.filter(key=str(customer.pk)).count(),
    )
    assert writes[0] == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_a_409():
    customer, token = make_customer("5000.00")
    assert post(token, order(quantity="2"), "key-2").status_code == 201
    reused = post(token, order(quantity="3"), "key-2")
    assert reused.status_code == 409
    assert reused.json()["code"] == "idempotency_key_reused"
    assert trades_of(customer).count() == 1


@pytest.mark.django_db
def test_keys_are_per_customer():
    first, first_token = make_customer("5000.00")
    second, second_token = make_customer("5000.00")
    assert post(first_token, order(quantity="1"), "shared").status_code == 201
    assert post(second_token, order(quantity="1"), "shared").status_code == 201
    assert trades_of(first).count() == trades_of(second).count() == 1


@pytest.mark.django_db
def test_refusals_are_replayed_too_and_keys_work_on_cancel():
    customer, token = make_customer("10.00")
    refused = post(token, order(quantity="100"), "key-3")
    assert refused.status_code == 422
    # Even after a deposit the key answers what it answered first; a new
    # attempt takes a new key.
    account_deposit(account=customer.account, amount=Decimal("100000"))
    assert post(token, order(quantity="100"), "key-3").content == refused.content
    assert trades_of(customer).count() == 0
    assert post(token, order(quantity="100"), "key-4").status_code == 201

    _, rich_token = make_customer("5000.00")
    trade = post(rich_token, order(quantity="1"), "place").json()
    path = f"/api/v1/trades/{trade['id']}/cancel"
    first = post(rich_token, {}, "cancel-1", path=path)
    assert first.status_code == 202
    assert post(rich_token, {}, "cancel-1", path=path).content == first.content


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there"])
def test_malformed_keys_are_400(key):
    customer, token = make_customer("5000.00")
    response = post(token, order(quantity="1"), key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_idempotency_key"
    assert trades_of(customer).count() == 0


def test_concurrent_requests_with_one_key_create_one_trade(live_db):
    customer, token = make_customer("50000.00")

    def attempt(_):
        try:
            response = post(token, order(quantity="1"), "race")
            return response.status_code, response.content
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(8)))

    assert {status for status, _ in results} == {201}
    assert len({content for _, content in results}) == 1
    assert trades_of(customer).count() == 1
    assert IdempotencyRecord.objects.filter(customer=customer).count() == 1
