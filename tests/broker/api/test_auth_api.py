import random

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings

from broker.services.customers import customer_create
from tests.broker.api.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice():
    customer, _ = customer_create(
        username="alice-login", cash=0, password="correct horse battery"
    )
    return customer


def login(username, password, ip="127.0.0.1"):
    return client_for(None).post(
        "/api/v1/auth/token",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=ip,
    )


def test_login_issues_a_working_token_and_delete_revokes_it(alice):
    response = login("alice-login", "correct horse battery")
    assert response.status_code == 201
    body = response.json()
    assert body["customer_id"] == alice.pk
    token = body["token"]
    assert client_for(token).get("/api/v1/account").status_code == 200

    second = login("alice-login", "correct horse battery").json()["token"]
    assert client_for(token).delete("/api/v1/auth/token").status_code == 204
    assert client_for(token).get("/api/v1/account").status_code == 401
    # Other devices keep their own token.
    assert client_for(second).get("/api/v1/account").status_code == 200


def test_wrong_credentials_are_401(alice):
    for username, password in [
        ("alice-login", "wrong"),
        ("nobody", "correct horse battery"),
    ]:
        response = login(username, password)
        assert response.status_code == 401
        assert response.json()["code"] == "authentication_failed"


def test_staff_users_get_no_trading_token():
    get_user_model().objects.create_user("ops-user", password="ops-password-1")
    assert login("ops-user", "ops-password-1").status_code == 401


def test_tokens_are_stored_hashed(alice):
    token = login("alice-login", "correct horse battery").json()["token"]
    stored = alice.user.api_tokens.values_list("key_hash", flat=True)
    assert token not in stored
    assert all(len(h) == 64 for h in stored)


def test_malformed_login_bodies_are_400():
    response = client_for(None).post(
        "/api/v1/auth/token", {"username": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "password" in response.json()["errors"]


@override_settings(THROTTLE_CUSTOMER_RATE="3/minute")
def test_customer_rate_limit_answers_429_with_retry_after():
    _, token = customer_create(username="busy-customer", cash=0)
    client = client_for(token)
    statuses = [client.get("/api/v1/account").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = client.get("/api/v1/account")
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) > 0
    assert limited["Content-Type"] == "application/problem+json"
    assert limited.json()["code"] == "throttled"


@override_settings(THROTTLE_LOGIN_RATE="2/minute")
def test_password_guessing_is_throttled_per_ip():
    # Counters are shared (Redis) by every test of the run: use an address of
    # this test's own.
    ip = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"
    statuses = [login("someone", "guess", ip).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
