from django.core.management.base import BaseCommand, CommandError

from broker.jobs import audit_ledger


class Command(BaseCommand):
    help = (
        "Audit the books now: balances against ledger entries, holds of terminal "
        "trades, negative balances. Exits 1 on any violation."
    )

    def handle(self, *args, **options) -> None:
        violations = audit_ledger()
        for violation in violations:
            self.stdout.write(violation)
        if violations:
            raise CommandError(
                f"ledger audit: {len(violations)} violation(s)", returncode=1
            )
        self.stdout.write(self.style.SUCCESS("ledger audit: clean, 0 violations"))
