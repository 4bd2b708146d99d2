"""The broker's tables. Money and quantities are NUMERIC; the database itself refuses
a row that breaks a balance rule (CheckConstraint), and every balance is the sum of
its append-only ledger entries."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from broker.money import (
    CASH_PLACES,
    COLUMN_DIGITS,
    PRICE_PLACES,
    QUANTITY_PLACES,
)


def _money(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=COLUMN_DIGITS, decimal_places=CASH_PLACES, **kwargs
    )


def _quantity(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=COLUMN_DIGITS, decimal_places=QUANTITY_PLACES, **kwargs
    )


def _price(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=COLUMN_DIGITS, decimal_places=PRICE_PLACES, **kwargs
    )


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
        LIMIT = "limit"

    class TimeInForce(models.TextChoices):
        DAY = "day"
        GTC = "gtc"
        IOC = "ioc"

    class Status(models.TextChoices):
        ACCEPTED = "accepted"
        SUBMITTED = "submitted"
        PARTIALLY_FILLED = "partially_filled"
        FILLED = "filled"
        PENDING_CANCEL = "pending_cancel"
        CANCELED = "canceled"
        REJECTED = "rejected"
        EXPIRED = "expired"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="trades"
    )
    symbol = models.CharField(max_length=16)
    side = models.CharField(max_length=4, choices=Side.choices)
    type = models.CharField(max_length=16, choices=Type.choices)
    time_in_force = models.CharField(
        max_length=8, choices=TimeInForce.choices, default=TimeInForce.DAY
    )
    quantity = _quantity()
    limit_price = _price(null=True, blank=True)
    # The customer's own reference, unique per account. The exchange's
    # client_order_id is always the trade id. NULL (not "") when absent, so the
    # partial unique constraint ignores trades without one.
    client_order_id = models.CharField(  # noqa: DJ001
        max_length=64, null=True, blank=True
    )
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
    # Why operations must look at this trade (a report from the exchange failed
    # the trust checks and was quarantined); empty when nothing is wrong.
    review_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    filled_at = models.DateTimeField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["account", "-created_at", "-id"]),
            models.Index(fields=["status", "updated_at"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "client_order_id"],
                condition=Q(client_order_id__isnull=False),
                name="trade_client_order_id_unique_per_account",
            ),
            models.CheckConstraint(
                condition=(Q(type="limit") & Q(limit_price__gt=0))
                | (Q(type="market") & Q(limit_price__isnull=True)),
                name="trade_limit_price_iff_limit",
            ),
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
    def exchange_client_order_id(self) -> str:
        """What the exchange deduplicates on: the trade id, so a resend of this
        trade can never become a second order."""
        return str(self.id)

    @property
    def leaves_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity


class Execution(models.Model):
    """One fill reported by the exchange; its ``exec_id`` is unique within its
    trade's order, so a replayed report can never be applied twice.

    Unique per trade rather than globally: an exchange's execution ids are only
    promised unique among its own orders (venues reuse them across trading days or
    after a reset), and a report is always booked against the trade it names, so a
    global key would turn another order's id into a skipped fill or a stuck topic.
    """

    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="fills")
    exec_id = models.CharField(max_length=64)
    quantity = _quantity()
    price = _price()
    executed_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="execution_quantity_gt_0"
            ),
            models.CheckConstraint(
                condition=Q(price__gt=0), name="execution_price_gt_0"
            ),
            models.UniqueConstraint(
                fields=["trade", "exec_id"], name="execution_unique_per_trade"
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
        ADJUSTMENT = "adjustment"

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
    # Manual adjustments say why and who.
    memo = models.CharField(max_length=300, blank=True, default="")
    # When it was posted (a settlement posts several steps, then writes them in one
    # statement; the timeline orders by this).
    created_at = models.DateTimeField(default=timezone.now, editable=False)

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


class BalanceAdjustmentRequest(models.Model):
    """A cash adjustment above ``ADMIN_ADJUSTMENT_APPROVAL_LIMIT``, waiting for a
    second staff member (four eyes). Nothing moves until another staff user
    approves it; the approval then posts the ledger entry (``account_adjust``)
    naming both. Decided once: pending -> approved or rejected by a conditional
    UPDATE (broker/services/adjustments.py), so approving twice posts once."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"

    account = models.ForeignKey(
        Account, on_delete=models.PROTECT, related_name="adjustment_requests"
    )
    amount = _money()
    reason = models.CharField(max_length=200)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "requested_at"])]
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0), name="adjustment_request_amount_nonzero"
            ),
            models.CheckConstraint(
                condition=(
                    Q(status="pending")
                    & Q(decided_by__isnull=True)
                    & Q(decided_at__isnull=True)
                )
                | (
                    ~Q(status="pending")
                    & Q(decided_by__isnull=False)
                    & Q(decided_at__isnull=False)
                ),
                name="adjustment_request_decided_iff_not_pending",
            ),
            # Four eyes: whoever asked can neither approve nor reject.
            models.CheckConstraint(
                condition=~Q(decided_by=F("requested_by")),
                name="adjustment_request_decided_by_another",
            ),
        ]

    def __str__(self) -> str:
        return f"adjustment #{self.pk} {self.amount:+} ({self.status})"


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


class TradeEvent(models.Model):
    """The timeline of a trade: one row per thing that happened to it, written by
    the service that made it happen, in the same transaction."""

    class Kind(models.TextChoices):
        STATUS = "status", "status change"
        OUTBOX = "outbox", "event enqueued for the executor"
        HANDLED = "handled", "message handled by the executor"
        REPORT = "report", "execution report from the exchange"
        FILL = "fill", "execution booked"
        QUARANTINE = "quarantine", "exchange message quarantined"

    trade = models.ForeignKey(Trade, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=24, blank=True, default="")
    # The leader epoch for executor writes; null for api writes.
    epoch = models.BigIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # When it happened: a settlement books several steps in memory, then writes
    # them in one statement (the timeline orders by this, as for ledger entries).
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        indexes = [models.Index(fields=["trade", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.status} ({self.trade_id})"


class IdempotencyRecord(models.Model):
    """The first response to a POST with an ``Idempotency-Key``, kept so a retry
    replays it instead of doing the work again."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="idempotency_records"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_status = models.IntegerField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True, default="")
    response_body = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "key"], name="idempotency_key_unique_per_customer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.customer_id})"


class ApiToken(models.Model):
    """A bearer token of a customer's user. Only a SHA-256 of the token is stored:
    a leaked database does not leak working credentials. A user may hold several
    (one per device) and revoke each."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    key_hash = models.CharField(max_length=64, unique=True)
    # The first characters of the token, to tell tokens apart in the admin.
    prefix = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Sliding expiry: a token is live until ``last_used_at + TOKEN_TTL_HOURS``.
    # Written at most once a minute per token (broker.services.tokens), so the
    # request hot path does not write on every call.
    last_used_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            # The prefix names a token in ``DELETE /api/v1/auth/tokens/<prefix>``.
            models.UniqueConstraint(
                fields=["user", "prefix"], name="api_token_prefix_unique_per_user"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user_id})"


class DeadLetter(models.Model):
    """A Kafka message the executor could not process (undecodable, unknown type,
    or failing every retry): copied to the dead-letter topic and recorded here, in
    the same fenced transaction that moves the topic's offset past it. (What the
    exchange sends that cannot be booked is a QuarantinedMessage instead.)"""

    topic = models.CharField(max_length=128)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    reason = models.CharField(max_length=500)
    payload = models.TextField(blank=True, default="")
    epoch = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["topic", "partition", "offset"], name="dead_letter_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}: {self.reason}"


class FixSession(models.Model):
    """The sequence state of one FIX session (one per topic, docs/FIX.md), carried
    from leader to leader: written only in the leader's fenced transactions, so a
    new leader continues the numbering where the old one stopped."""

    sender_comp_id = models.CharField(max_length=64, primary_key=True)
    topic = models.CharField(max_length=128, unique=True)
    # The MsgSeqNum the next message we send takes.
    next_out_seq = models.BigIntegerField(default=1)
    # The MsgSeqNum we expect next from the exchange (everything below is booked).
    next_in_seq = models.BigIntegerField(default=1)
    # An operator asked for ResetSeqNumFlag=Y at the next logon (a new trading
    # day agreed with the venue); never set by the code's own recovery.
    reset_requested = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(next_out_seq__gte=1) & Q(next_in_seq__gte=1),
                name="fix_session_seq_gte_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sender_comp_id}: out {self.next_out_seq} in {self.next_in_seq}"


class FixJournal(models.Model):
    """An application message we sent (or are about to: journaled in the same
    transaction that allocates its MsgSeqNum, before it is written), kept to
    answer the exchange's ResendRequest with the same body."""

    session = models.CharField(max_length=64)
    seq = models.BigIntegerField()
    msg_type = models.CharField(max_length=4)
    trade = models.ForeignKey(
        Trade, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The application fields, tag=value joined by SOH (header added at sending).
    body = models.TextField()
    # The first SendingTime: OrigSendingTime(122) of every resend.
    sending_time = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "seq"], name="fix_journal_unique_seq"
            ),
        ]
        indexes = [models.Index(fields=["trade", "msg_type"])]
        verbose_name_plural = "FIX journal"

    def __str__(self) -> str:
        return f"{self.session} #{self.seq} {self.msg_type}"


class QuarantinedMessage(models.Model):
    """A message from the exchange that was not acted on: garbled, impossible or
    failing the trust checks (docs/FIX.md, "The trust boundary"). Nothing was
    booked for it; the trade it names, if any, is flagged for review."""

    session = models.CharField(max_length=64)
    # Its MsgSeqNum, when it could be read.
    seq = models.BigIntegerField(null=True, blank=True)
    msg_type = models.CharField(max_length=8, blank=True, default="")
    trade = models.ForeignKey(
        Trade,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="quarantined_messages",
    )
    reason = models.CharField(max_length=500)
    # The message as received, SOH shown as |.
    raw = models.TextField()
    epoch = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.session} #{self.seq} {self.msg_type}: {self.reason}"
