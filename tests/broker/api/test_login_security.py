"""Logins against password guessing, on the real Redis and PostgreSQL: the client
address only from trusted proxies, a per-username lockout with backoff, failing
closed when Redis is unreachable, validated passwords."""

import random
import threading
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import RequestFactory, override_settings

from broker.api.throttling import client_ip, ip_ident, login_attempt_begin
from broker.models import ApiToken
from broker.services.customers import customer_create
from devstack.launcher import free_port
from devstack.wait import wait_until
from tests.broker.api.conftest import client_for

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def random_ip() -> str:
    # Counters are shared (Redis) by every test of the run: an address of its own.
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(256)}"


def unique(name: str) -> str:
    # Usernames of its own too: per-username lockouts also outlive the test.
    return f"{name}-{uuid.uuid4().hex[:10]}"


def login(username, password, ip=None, **headers):
    return client_for(None).post(
        "/api/v1/auth/token",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=ip or random_ip(),
        **headers,
    )


@pytest.fixture
def bob():
    customer, _ = customer_create(username=unique("bob"), cash=0, password=PASSWORD)
    return customer


# --- the client address --------------------------------------------------------


@override_settings(THROTTLE_LOGIN_RATE="2/minute")
def test_a_new_forwarded_for_per_request_does_not_escape_the_ip_limit():
    ip = random_ip()
    statuses = [
        login(
            unique("someone"), "guess", ip, HTTP_X_FORWARDED_FOR=random_ip()
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]


@override_settings(THROTTLE_LOGIN_RATE="2/minute", TRUSTED_PROXY_COUNT=1)
def test_behind_one_proxy_only_the_address_it_appended_counts():
    proxy, client = random_ip(), random_ip()
    statuses = [
        login(
            unique("someone"),
            "guess",
            proxy,
            HTTP_X_FORWARDED_FOR=f"{random_ip()}, {client}",
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    # Another client behind the same proxy has a budget of its own.
    other = login(unique("someone"), "guess", proxy, HTTP_X_FORWARDED_FOR=random_ip())
    assert other.status_code == 401


@pytest.mark.parametrize(
    ("depth", "forwarded", "expected"),
    [
        (0, "203.0.113.7", "192.0.2.1"),  # no proxy: the header is the client's
        (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        (1, " 203.0.113.7 ", "203.0.113.7"),
        (2, "198.51.100.1, 203.0.113.7, 192.0.2.55", "203.0.113.7"),
        (2, "203.0.113.7", "192.0.2.1"),  # fewer hops than proxies: not via them
        (1, "", "192.0.2.1"),
        (1, "not-an-address", "192.0.2.1"),
        (1, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_comes_from_the_trusted_hops_only(
    depth, forwarded, expected
):
    request = RequestFactory().get(
        "/", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=forwarded
    )
    with override_settings(TRUSTED_PROXY_COUNT=depth):
        assert client_ip(request) == expected


def test_ipv6_clients_are_limited_per_64_block():
    assert ip_ident("2001:db8:1:2::1") == ip_ident("2001:db8:1:2:ffff::9")
    assert ip_ident("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert ip_ident("2001:db8:1:3::1") != ip_ident("2001:db8:1:2::1")
    assert ip_ident("::ffff:192.0.2.1") == "192.0.2.1"
    assert ip_ident("192.0.2.1") == "192.0.2.1"


# --- per-username lockout ------------------------------------------------------


@override_settings(LOGIN_LOCKOUT_AFTER=3, LOGIN_LOCKOUT_SECONDS=60)
def test_failed_logins_lock_the_username_whatever_the_address(bob):
    username = bob.user.username
    assert [login(username, "wrong guess").status_code for _ in range(3)] == [401] * 3
    # Even the right password, from yet another address, waits out the lock.
    locked = login(username, PASSWORD)
    assert locked.status_code == 429
    assert locked["Content-Type"] == "application/problem+json"
    assert locked.json()["code"] == "throttled"
    assert 55 <= int(locked["Retry-After"]) <= 60
    # Variants of the name (case, Unicode compatibility forms) share its count.
    assert login(username.upper(), PASSWORD).status_code == 429
    assert login(username.replace("b", "\uff42", 1), PASSWORD).status_code == 429


@override_settings(LOGIN_LOCKOUT_AFTER=2, LOGIN_LOCKOUT_SECONDS=60)
def test_unknown_usernames_are_locked_exactly_like_known_ones(bob):
    def attempts(username):
        responses = [login(username, "wrong guess") for _ in range(3)]
        return [(r.status_code, r.json()["code"]) for r in responses]

    known, unknown = attempts(bob.user.username), attempts(unique("nobody"))
    assert (
        known
        == unknown
        == [
            (401, "authentication_failed"),
            (401, "authentication_failed"),
            (429, "throttled"),
        ]
    )


@override_settings(
    LOGIN_LOCKOUT_AFTER=1, LOGIN_LOCKOUT_SECONDS=1, LOGIN_LOCKOUT_MAX_SECONDS=2
)
def test_the_lockout_doubles_with_each_further_failure_up_to_its_cap():
    username = unique("doubling")
    assert login_attempt_begin(username) is None  # 1st failure: locked 1 s
    waits = []
    for _ in range(3):
        first = login_attempt_begin(username)
        again = login_attempt_begin(username)
        # Knocking while locked is refused and does not extend the lock.
        assert first is not None and again is not None and again <= first
        waits.append(first)
        # The attempt let through once the lock ends is the next failure.
        wait_until(
            lambda: login_attempt_begin(username) is None,
            timeout=10,
            interval=0.1,
            what="the username's lock to end",
        )
    assert 0.5 < waits[0] <= 1
    assert 1.5 < waits[1] <= 2
    assert 1.5 < waits[2] <= 2  # capped


@override_settings(LOGIN_LOCKOUT_AFTER=3, LOGIN_LOCKOUT_SECONDS=60)
def test_a_successful_login_forgets_the_failures(bob):
    username = bob.user.username
    statuses = [
        login(username, password).status_code
        for password in ["wrong 1", "wrong 2", PASSWORD, "wrong 3", "wrong 4"]
    ]
    assert statuses == [401, 401, 201, 401, 401]
    assert login(username, PASSWORD).status_code == 201


@override_settings(LOGIN_LOCKOUT_AFTER=5, LOGIN_LOCKOUT_SECONDS=60)
def test_parallel_guesses_get_no_more_attempts_than_the_threshold():
    username, allowed = unique("parallel"), []
    barrier = threading.Barrier(20)

    def attempt() -> None:
        barrier.wait()
        allowed.append(login_attempt_begin(username) is None)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 5


# --- Redis unreachable ---------------------------------------------------------


def test_logins_fail_closed_when_redis_is_down(bob):
    # A port nothing listens on: Redis down (connection refused at once).
    tokens_before = ApiToken.objects.filter(user=bob.user).count()
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        response = login(bob.user.username, PASSWORD)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "throttle_unavailable"
    assert int(response["Retry-After"]) > 0
    # The right password got nothing.
    assert ApiToken.objects.filter(user=bob.user).count() == tokens_before


def test_token_requests_fail_open_when_redis_is_down():
    # Their limits protect capacity, not secrets: trading goes on (logged).
    _, token = customer_create(username=unique("reader"), cash=0)
    with override_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
        assert client_for(token).get("/api/v1/account").status_code == 200
        assert client_for(token).get("/api/v1/auth/tokens").status_code == 200


# --- passwords -----------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["short1!", "password1234", "12345678901234", "weak-user-name"]
)
def test_customer_passwords_must_pass_the_validators(password):
    username = "weak-user-name" if password == "weak-user-name" else unique("weak")
    with pytest.raises(ValidationError):
        customer_create(username=username, cash=0, password=password)
    assert not get_user_model().objects.filter(username=username).exists()
