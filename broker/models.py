"""The broker's tables. Money and quantities are NUMERIC; the database itself refuses
a row that breaks a balance rule (CheckConstraint), and every balance is the sum of
its append-only ledger entries."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

CASH_PLACES = 2
QUANTITY_PLACES = 6
PRICE_PLACES = 4
CASH_ASSET = "USD"


def _money(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=CASH_PLACES, **kwargs)


def _quantity(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=QUANTITY_PLACES, **kwargs)


def _price(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=PRICE_PLACES, **kwargs)


class Customer(models.Model):
    """A trading customer; ``id`` is the customer id that routes events to a topic."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="customer"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"customer {self.pk} ({self.user.get_username()})"


class Account(models.Model):
    """Cash of one customer. ``reserved_cash`` is held by open buy trades; buying power
    is ``cash - reserved_cash``. Placement locks this row: it serialises every
    same-customer write."""

    customer = models.OneToOneField(
        Customer, on_delete=models.PROTECT, related_name="account"
    )
    cash = _money(default=Decimal("0"))
    reserved_cash = _money(default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(cash__gte=0), name="account_cash_gte_0"),
            models.CheckConstraint(
                condition=Q(reserved_cash__gte=0), name="account_reserved_gte_0"
            ),
            # Buying power never goes negative: the last line of defence against
            # overspend, whatever the application code does.
            models.CheckConstraint(
                condition=Q(reserved_cash__lte=F("cash")),
                name="account_reserved_lte_cash",
            ),
        ]

    def __str__(self) -> str:
        return f"account of customer {self.customer_id}"

    @property
    def buying_power(self) -> Decimal:
        return self.cash - self.reserved_cash


class Position(models.Model):
    """Shares of one symbol held by an account; ``reserved_quantity`` is held by open
    sell trades (no short selling)."""

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="positions"
    )
    symbol = models.CharField(max_length=16)
    quantity = _quantity(default=Decimal("0"))
    reserved_quantity = _quantity(default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "symbol"], name="position_account_symbol_unique"
            ),
            models.CheckConstraint(
                condition=Q(quantity__gte=0), name="position_quantity_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(reserved_quantity__gte=0), name="position_reserved_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(reserved_quantity__lte=F("quantity")),
                name="position_reserved_lte_quantity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.symbol} x {self.quantity} (account {self.account_id})"


class Trade(models.Model):
    """One order of a customer. ``id`` doubles as the exchange client_order_id, so a
    resend can never become a second order."""

    class Side(models.TextChoices):
        BUY = "buy"
        SELL = "sell"

    class Type(models.TextChoices):
        MARKET = "market"

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        SUBMITTED = "submitted"
        FILLED = "filled"
        REJECTED = "rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="trades"
    )
    symbol = models.CharField(max_length=16)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    quantity = _quantity()
    status = models.CharField(
        max_length=24, choices=Status.choices, default=Status.ACCEPTED
    )
    # Market buys may not fill above this price (last price x (1 + collar)).
    collar_price = _price(null=True, blank=True)
    # What is still held for this trade: cash for a buy, shares for a sell.
    hold_remaining = _quantity(default=Decimal("0"))
    filled_quantity = _quantity(default=Decimal("0"))
    average_price = _price(null=True, blank=True)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    reject_reason = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["account", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="trade_quantity_gt_0"
            ),
            models.CheckConstraint(
                condition=Q(filled_quantity__gte=0)
                & Q(filled_quantity__lte=F("quantity")),
                name="trade_filled_within_quantity",
            ),
            models.CheckConstraint(
                condition=Q(hold_remaining__gte=0), name="trade_hold_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} [{self.status}] {self.id}"

    @property
    def client_order_id(self) -> str:
        return str(self.id)


class Execution(models.Model):
    """One fill reported by the exchange; its ``exec_id`` is unique, so a replayed
    report can never be applied twice."""

    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="fills")
    exec_id = models.CharField(max_length=64, unique=True)
    quantity = _quantity()
    price = _price()
    executed_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="execution_quantity_gt_0"
            ),
            models.CheckConstraint(
                condition=Q(price__gt=0), name="execution_price_gt_0"
            ),
        ]

    def __str__(self) -> str:
        return f"fill {self.exec_id}: {self.quantity} @ {self.price}"


class LedgerEntry(models.Model):
    """An append-only change to one balance bucket. A database trigger refuses UPDATE
    and DELETE; the balance columns equal the sums of these rows."""

    class Bucket(models.TextChoices):
        CASH = "cash"
        RESERVED_CASH = "reserved_cash"
        POSITION = "position"
        RESERVED_POSITION = "reserved_position"

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        HOLD = "hold"
        RELEASE = "release"
        FILL = "fill"

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="ledger"
    )
    trade = models.ForeignKey(
        Trade, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger"
    )
    execution = models.ForeignKey(
        Execution, on_delete=models.PROTECT, null=True, blank=True
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    bucket = models.CharField(max_length=24, choices=Bucket.choices)
    # "USD" for the cash buckets, the symbol for the position buckets.
    asset = models.CharField(max_length=16)
    amount = _quantity()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["account", "bucket", "asset"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0), name="ledger_amount_nonzero"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.bucket} {self.asset} {self.amount:+}"


class OutboxEvent(models.Model):
    """An event to publish to Kafka, written in the same transaction as the change it
    announces. The relay publishes unpublished rows in id order and then stamps
    ``published_at``."""

    topic = models.CharField(max_length=128)
    key = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The relay's only query: the unpublished tail, oldest first.
            models.Index(
                fields=["id"],
                name="outbox_unpublished_idx",
                condition=Q(published_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.topic} [{self.key}] #{self.pk}"


class TopicLeader(models.Model):
    """The fence of one topic: the epoch of its current leader. A leader claims it
    with a conditional upsert (only a higher epoch wins); every executor
    transaction re-reads it FOR SHARE and rolls back if it is not its own."""

    topic = models.CharField(max_length=128, primary_key=True)
    epoch = models.BigIntegerField()
    holder = models.CharField(max_length=200)
    elected_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.topic}: {self.holder} (epoch {self.epoch})"


class ConsumerOffset(models.Model):
    """Next Kafka offset to read per topic partition, written in the same fenced
    transaction as the work it covers (so work and position never disagree)."""

    topic = models.CharField(max_length=128)
    partition = models.IntegerField()
    next_offset = models.BigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["topic", "partition"], name="consumer_offset_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] @ {self.next_offset}"
