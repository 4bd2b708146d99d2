"""``manage.py reconcile <trade-id>...``: ask each trade's topic leader to catch the
trade up with the exchange's record (the same as the admin's reconcile action)."""

import uuid

from django.core.management.base import BaseCommand, CommandError

from broker.models import Trade
from broker.services.cancellation import trade_request_reconcile
from broker.services.transitions import is_reconcilable


class Command(BaseCommand):
    help = "Enqueue a reconcile of the given trades with the exchange."

    def add_arguments(self, parser) -> None:
        parser.add_argument("trade_ids", nargs="+")

    def handle(self, *args, trade_ids: list[str], **options) -> None:
        for raw in trade_ids:
            try:
                trade = Trade.objects.select_related("account").get(id=uuid.UUID(raw))
            except (ValueError, Trade.DoesNotExist) as exc:
                raise CommandError(f"no trade {raw!r}") from exc
            if not is_reconcilable(trade):
                self.stdout.write(f"{trade.id}: {trade.status}, nothing to reconcile")
                continue
            trade_request_reconcile(trade=trade, requested_by="cli")
            self.stdout.write(f"{trade.id}: reconcile requested ({trade.status})")
