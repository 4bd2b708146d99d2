"""Who reaches the operations admin (broker/admin_access.py): only clients inside
ADMIN_ALLOWED_NETWORKS (a 404 for everyone else, as for a path that does not
exist), and its login is throttled per address and per username in Redis,
refused while Redis is down."""

import random
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/"
ADMIN_PATHS = ["/admin/", "/admin", LOGIN, "/admin/broker/trade/", "/admin/nope/"]


def address_in(prefix: str) -> str:
    return f"{prefix}.{random.randrange(256)}.{random.randrange(1, 255)}"


def assert_hidden(response) -> None:
    """The same answer as for a path that does not exist."""
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "not_found"


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(
        f"ops-{uuid.uuid4().hex[:8]}", password="ops-password-long", is_staff=True
    )


def test_by_default_only_loopback_reaches_the_admin(client):
    assert client.get(LOGIN, REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get(LOGIN, REMOTE_ADDR="::1").status_code == 200
    assert client.get(LOGIN, REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200
    # Private ranges are not trusted by default: an ingress controller or a
    # load balancer in them would hand the admin to the internet.
    for address in ["10.0.0.7", "172.16.4.2", "192.168.1.10", "203.0.113.9"]:
        for path in ADMIN_PATHS:
            assert_hidden(client.get(path, REMOTE_ADDR=address))


@override_settings(ADMIN_ALLOWED_NETWORKS=["10.8.0.0/16", "2001:db8::/32"])
def test_the_admin_answers_inside_the_allowed_networks_only(client, staff):
    client.force_login(staff)
    assert client.get("/admin/", REMOTE_ADDR="10.8.3.4").status_code == 200
    assert client.get("/admin/", REMOTE_ADDR="2001:db8::5").status_code == 200
    for address in ["10.9.0.1", "127.0.0.1", "2001:db9::1", "", "not-an-address"]:
        for path in ADMIN_PATHS:
            assert_hidden(client.get(path, REMOTE_ADDR=address))
    # A logged-in session from outside is refused too, and POSTs as well.
    assert_hidden(client.post("/admin/logout/", REMOTE_ADDR="198.51.100.4"))


@override_settings(ADMIN_ALLOWED_NETWORKS=["203.0.113.0/24"])
def test_the_rest_of_the_site_is_not_affected(client):
    response = client.get("/api/v1/account", REMOTE_ADDR="198.51.100.4")
    assert response.status_code == 401
    assert client.get("/healthz", REMOTE_ADDR="198.51.100.4").status_code == 200
    assert client.get("/administrator/", REMOTE_ADDR="198.51.100.4").status_code == 404


@override_settings(ADMIN_ALLOWED_NETWORKS=["10.8.0.0/16"], TRUSTED_PROXY_COUNT=1)
def test_behind_a_trusted_proxy_the_address_it_saw_decides(client):
    # The proxy (the peer) is in a private range; the client is what it wrote.
    proxy = "10.8.200.1"
    allowed = client.get(LOGIN, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="10.8.0.7")
    assert allowed.status_code == 200
    outside = client.get(LOGIN, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert_hidden(outside)
    # What the client writes itself sits left of the proxy's entry: never read.
    spoofed = client.get(
        LOGIN, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="10.8.0.7, 198.51.100.1"
    )
    assert_hidden(spoofed)


# --- login throttling -------------------------------------------------------------


def attempt(client: Client, username: str, address: str, password: str = "wrong"):
    return client.post(
        LOGIN,
        {"username": username, "password": password, "next": "/admin/"},
        REMOTE_ADDR=address,
    )


@override_settings(
    ADMIN_ALLOWED_NETWORKS=["10.0.0.0/8"],
    ADMIN_LOGIN_USERNAME_RATE="3/hour",
    ADMIN_LOGIN_IP_RATE="1000/hour",
)
def test_admin_logins_are_limited_per_username_across_addresses(client, staff):
    name = staff.get_username()
    for _ in range(3):
        assert attempt(client, name, address_in("10.1")).status_code == 200
    refused = attempt(client, name, address_in("10.2"))
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    # Even the right password: the attempt is not looked at.
    right = attempt(client, name.upper(), address_in("10.3"), "ops-password-long")
    assert right.status_code == 429
    assert "_auth_user_id" not in client.session
    # Another username from the same kind of address is unaffected.
    other = attempt(client, f"someone-{uuid.uuid4().hex[:6]}", address_in("10.1"))
    assert other.status_code == 200


@override_settings(
    ADMIN_ALLOWED_NETWORKS=["10.0.0.0/8"],
    ADMIN_LOGIN_USERNAME_RATE="1000/hour",
    ADMIN_LOGIN_IP_RATE="2/hour",
)
def test_admin_logins_are_limited_per_address_across_usernames(client):
    address = address_in("10.4")
    for _ in range(2):
        assert attempt(client, uuid.uuid4().hex, address).status_code == 200
    refused = attempt(client, uuid.uuid4().hex, address)
    assert refused.status_code == 429
    assert attempt(client, uuid.uuid4().hex, address_in("10.5")).status_code == 200
    # Only POSTs count: the login page itself is still served.
    assert client.get(LOGIN, REMOTE_ADDR=address).status_code == 200


@override_settings(ADMIN_ALLOWED_NETWORKS=["10.0.0.0/8"])
def test_a_right_password_within_the_limits_logs_in(client, staff):
    response = attempt(
        client, staff.get_username(), address_in("10.6"), "ops-password-long"
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(staff.pk)


@override_settings(REDIS_URL="redis://127.0.0.1:1/0")
def test_admin_logins_are_refused_while_redis_is_down(client, staff):
    response = attempt(client, staff.get_username(), "127.0.0.1", "ops-password-long")
    assert response.status_code == 503
    assert response["Retry-After"]
    assert "_auth_user_id" not in client.session
    # Pages behind an existing session still work: only logins need the counters.
    client.force_login(staff)
    assert client.get("/admin/", REMOTE_ADDR="127.0.0.1").status_code == 200
