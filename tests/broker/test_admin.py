import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from broker.models import Trade
from tests.factories import fixed_price, make_customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", password="ops-password")
    client.force_login(user)
    return client


def test_every_registered_model_has_a_working_changelist(staff_client):
    from broker.services.placement import trade_place

    customer, _ = make_customer("5000.00")
    trade_place(
        customer=customer,
        symbol="AAPL",
        side="buy",
        quantity=1,
        order_type="market",
        price_source=fixed_price("10.00"),
    )
    for model in admin.site._registry:
        if model._meta.app_label != "broker":
            continue
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"
        )
        assert staff_client.get(url).status_code == 200, url
    trade = Trade.objects.get(account__customer=customer)
    detail = reverse("admin:broker_trade_change", args=[trade.pk])
    assert staff_client.get(detail).status_code == 200


def test_money_cannot_be_edited_from_the_admin(staff_client):
    customer, _ = make_customer("5000.00")
    url = reverse("admin:broker_account_change", args=[customer.account.pk])
    response = staff_client.post(url, {"cash": "999999.00"})
    assert response.status_code == 403
    customer.account.refresh_from_db()
    assert str(customer.account.cash) == "5000.00"


def test_admin_login_page_is_served_to_anonymous_users(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
