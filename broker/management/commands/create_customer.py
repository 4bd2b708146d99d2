import getpass
import json
import sys
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
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
        '{"customer_id": ..., "token": ...}. A login password is never an '
        "argument (it would show in the process list and the shell history): "
        "--password-prompt asks for it, --password-stdin reads it."
    )
    # call_command(..., stdin=...) for tests and scripts, as createsuperuser does.
    stealth_options = ("stdin",)

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--cash", default="0", help="initial cash, e.g. 10000.00")
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--password-prompt",
            action="store_true",
            help="ask for a login password on the terminal (twice)",
        )
        source.add_argument(
            "--password-stdin",
            action="store_true",
            help="read a login password from the first line of stdin",
        )

    def handle(
        self,
        *args,
        username: str,
        cash: str,
        password_prompt: bool,
        password_stdin: bool,
        **options,
    ):
        amount = _amount(cash)
        password = None
        if password_stdin:
            password = self._from_stdin(options.get("stdin") or sys.stdin)
        elif password_prompt:
            password = self._from_prompt()
        try:
            customer, token = customer_create(
                username=username, cash=amount, password=password
            )
        except ValidationError as exc:
            raise CommandError("password refused: " + " ".join(exc.messages)) from exc
        except IntegrityError as exc:
            raise CommandError(f"username {username!r} is taken") from exc
        self.stdout.write(json.dumps({"customer_id": customer.pk, "token": token}))

    def _from_stdin(self, stream) -> str:
        line = stream.readline()
        if not line:
            raise CommandError("--password-stdin: nothing on stdin")
        # The line's end is not part of the password; other whitespace is.
        return line.rstrip("\r\n")

    def _from_prompt(self) -> str:
        if not sys.stdin.isatty():
            raise CommandError("--password-prompt needs a terminal: --password-stdin")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise CommandError("the two passwords differ")
        return password
