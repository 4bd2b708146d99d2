"""API tokens: sliding expiry, listing, revoking one or all, revoked by a password
change on every path, capped per customer. Real PostgreSQL and Redis."""

import io
import threading
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from broker.models import ApiToken
from broker.services.customers import customer_create
from broker.services.tokens import token_hash, token_issue
from tests.broker.api.conftest import client_for
from tests.broker.api.test_login_security import login

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def carol():
    customer, _ = customer_create(username=unique("carol"), cash=0, password=PASSWORD)
    return customer


def new_token(customer) -> str:
    response = login(customer.user.username, PASSWORD)
    assert response.status_code == 201, response.content
    return response.json()["token"]


def record(token: str) -> ApiToken:
    return ApiToken.objects.get(key_hash=token_hash(token))


def idle_for(token: str, delta: timedelta) -> None:
    ApiToken.objects.filter(key_hash=token_hash(token)).update(
        last_used_at=timezone.now() - delta
    )


def works(token: str) -> bool:
    status = client_for(token).get("/api/v1/account").status_code
    assert status in (200, 401)
    return status == 200


# --- expiry --------------------------------------------------------------------


@override_settings(TOKEN_TTL_HOURS=2)
def test_a_token_unused_for_the_ttl_expires(carol):
    token = new_token(carol)
    idle_for(token, timedelta(hours=2, seconds=-30))
    assert works(token)  # just inside: and the use slides it
    idle_for(token, timedelta(hours=2, seconds=1))
    response = client_for(token).get("/api/v1/account")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_use_slides_the_expiry_but_writes_at_most_once_a_minute(carol):
    token = new_token(carol)
    idle_for(token, timedelta(seconds=30))
    before = record(token).last_used_at
    with CaptureQueriesContext(connection) as queries:
        assert works(token)
    assert not [q for q in queries if q["sql"].startswith("UPDATE")]
    assert record(token).last_used_at == before

    idle_for(token, timedelta(minutes=5))
    started = timezone.now()
    assert works(token)
    assert record(token).last_used_at >= started


# --- listing and revoking -------------------------------------------------------


def test_a_customer_lists_their_live_tokens_only(carol):
    phone, laptop, revoked, expired = (new_token(carol) for _ in range(4))
    assert client_for(revoked).delete("/api/v1/auth/token").status_code == 204
    idle_for(expired, timedelta(days=365))
    new_token(customer_create(username=unique("other"), cash=0, password=PASSWORD)[0])

    response = client_for(laptop).get("/api/v1/auth/tokens")
    assert response.status_code == 200
    listed = response.json()
    signup_token = ApiToken.objects.filter(user=carol.user).order_by("pk").first()
    assert {t["prefix"] for t in listed} == {
        phone[:8],
        laptop[:8],
        signup_token.prefix,
    }
    assert [t["prefix"] for t in listed if t["current"]] == [laptop[:8]]
    mine = next(t for t in listed if t["prefix"] == laptop[:8])
    assert set(mine) == {
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "current",
    }
    stored = record(laptop)
    assert mine["expires_at"] == (
        (stored.last_used_at + timedelta(hours=168)).isoformat().replace("+00:00", "Z")
    )
    # Never the token itself, nor its hash.
    assert laptop not in response.content.decode()
    assert stored.key_hash not in response.content.decode()


def test_a_token_is_revoked_by_its_prefix(carol):
    phone, laptop = new_token(carol), new_token(carol)
    _, other_token = customer_create(username=unique("dan"), cash=0)

    client = client_for(laptop)
    assert client.delete(f"/api/v1/auth/tokens/{phone[:8]}").status_code == 204
    assert not works(phone)
    assert works(laptop)
    # Gone is gone; another customer's token is not found; neither is garbage.
    for prefix in [phone[:8], other_token[:8], "short", "%00%00%00%00%00%00%00%00"]:
        response = client.delete(f"/api/v1/auth/tokens/{prefix}")
        assert response.status_code == 404, prefix
        assert response.json()["code"] == "not_found"
    assert works(other_token)


def test_all_tokens_are_revoked_at_once(carol):
    tokens = [new_token(carol) for _ in range(3)]
    _, bystander = customer_create(username=unique("erin"), cash=0)
    assert client_for(tokens[0]).delete("/api/v1/auth/tokens").status_code == 204
    assert not any(works(token) for token in tokens)
    assert not ApiToken.objects.filter(user=carol.user, revoked_at__isnull=True)
    assert works(bystander)


# --- password changes -----------------------------------------------------------


def test_set_password_and_save_revokes_every_token(carol):
    tokens = [new_token(carol) for _ in range(2)]
    user = get_user_model().objects.get(pk=carol.user.pk)
    user.set_password("a brand new passphrase")
    user.save()
    assert not any(works(token) for token in tokens)
    assert not ApiToken.objects.filter(user=carol.user, revoked_at__isnull=True)


def test_changepassword_revokes_every_token(carol, monkeypatch):
    token = new_token(carol)
    monkeypatch.setattr(
        "django.contrib.auth.management.commands.changepassword.getpass.getpass",
        lambda prompt="": "a brand new passphrase",
    )
    call_command("changepassword", carol.user.username, stdout=io.StringIO())
    assert not works(token)


def test_the_admins_password_form_revokes_every_token(carol, client):
    token = new_token(carol)
    admin = get_user_model().objects.create_superuser(
        unique("ops"), password="ops-password-long"
    )
    client.force_login(admin)
    response = client.post(
        f"/admin/auth/user/{carol.user.pk}/password/",
        {
            "password1": "a brand new passphrase",
            "password2": "a brand new passphrase",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert not works(token)


def test_disabling_the_password_revokes_every_token(carol):
    token = new_token(carol)
    user = get_user_model().objects.get(pk=carol.user.pk)
    user.set_unusable_password()
    user.save()
    assert not works(token)


def test_other_saves_of_the_user_keep_the_tokens(carol):
    token = new_token(carol)
    user = get_user_model().objects.get(pk=carol.user.pk)
    user.email = "carol@example.com"
    user.save()
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    assert works(token)


def test_a_rolled_back_password_change_revokes_nothing(carol):
    token = new_token(carol)
    user = get_user_model().objects.get(pk=carol.user.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        user.set_password("a brand new passphrase")
        user.save()
        raise RuntimeError("the rest of the change failed")
    assert works(token)


def test_a_hash_upgrade_at_login_is_not_a_password_change():
    customer, signup_token = customer_create(
        username=unique("frank"), cash=0, password=PASSWORD
    )
    assert customer.user.password.startswith("md5$")  # the test settings' hasher
    # PBKDF2 is now preferred: logging in re-hashes the same password and saves it.
    with override_settings(
        PASSWORD_HASHERS=[
            "django.contrib.auth.hashers.PBKDF2PasswordHasher",
            "django.contrib.auth.hashers.MD5PasswordHasher",
        ]
    ):
        token = new_token(customer)
    customer.user.refresh_from_db()
    assert customer.user.password.startswith("pbkdf2_sha256$")
    assert works(signup_token) and works(token)


# --- the cap ---------------------------------------------------------------------


@override_settings(TOKEN_MAX_PER_USER=3)
def test_a_login_over_the_cap_revokes_the_least_recently_used_token(carol):
    ApiToken.objects.filter(user=carol.user).update(revoked_at=timezone.now())
    first, second, third = (new_token(carol) for _ in range(3))
    idle_for(second, timedelta(hours=3))  # the least recently used
    idle_for(first, timedelta(hours=1))
    fourth = new_token(carol)
    assert [works(t) for t in (first, second, third, fourth)] == [
        True,
        False,
        True,
        True,
    ]
    live = ApiToken.objects.filter(user=carol.user, revoked_at__isnull=True)
    assert live.count() == 3


@pytest.mark.django_db(transaction=True)
@override_settings(TOKEN_MAX_PER_USER=3)
def test_concurrent_logins_never_leave_more_live_tokens_than_the_cap():
    customer, _ = customer_create(username=unique("many-devices"), cash=0)
    barrier = threading.Barrier(8)
    errors = []

    def issue() -> None:
        try:
            barrier.wait()
            token_issue(user=customer.user)
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    live = ApiToken.objects.filter(user=customer.user, revoked_at__isnull=True)
    assert live.count() == 3
    assert ApiToken.objects.filter(user=customer.user).count() == 9
