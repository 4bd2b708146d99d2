import json
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from broker.money import to_cents
from broker.services.customers import customer_create


def _amount(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise CommandError(f"--cash: not a decimal amount: {value!r}") from exc
    if not amount.is_finite() or amount < 0 or amount != to_cents(amount):
        raise CommandError("--cash: a non-negative amount with at most 2 decimals")
    return amount


class Command(BaseCommand):
    help = (
        "Create a customer with a funded account; prints one JSON line "
        '{"customer_id": ..., "token": ...}.'
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--cash", default="0", help="initial cash, e.g. 10000.00")
        parser.add_argument("--password", default=None, help="optional login password")

    def handle(self, *args, username: str, cash: str, password: str | None, **options):
        try:
            customer, token = customer_create(
                username=username, cash=_amount(cash), password=password
            )
        except IntegrityError as exc:
            raise CommandError(f"username {username!r} is taken") from exc
        self.stdout.write(json.dumps({"customer_id": customer.pk, "token": token}))
