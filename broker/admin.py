"""Operations view of the book. Balances, ledger, fills and the outbox are read-only
here: money only moves through the services, and every action below calls one (and
leaves a LogEntry saying what it did). Reads for the extra panels live in
``broker.ops``."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import DataError, IntegrityError, transaction
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from broker import ops
from broker.errors import BrokerError
from broker.models import (
    Account,
    ApiToken,
    BalanceAdjustmentRequest,
    ConsumerOffset,
    Customer,
    DeadLetter,
    Execution,
    FixJournal,
    FixSession,
    IdempotencyRecord,
    LedgerEntry,
    OutboxEvent,
    Position,
    QuarantinedMessage,
    TopicLeader,
    Trade,
)
from broker.money import CASH_ASSET, CASH_PLACES
from broker.services.adjustments import (
    adjustment_needs_approval,
    adjustment_request_approve,
    adjustment_request_create,
    adjustment_request_reject,
)
from broker.services.cancellation import trade_request_cancel, trade_request_reconcile
from broker.services.customers import account_adjust
from broker.services.transitions import CANCELABLE, is_reconcilable, stuck_after

LEDGER_INLINE_LIMIT = 50
# How many trade ids an action's message names before it says "and N more".
_MESSAGE_IDS = 20


def _name_all(items: list[str]) -> str:
    shown = ", ".join(items[:_MESSAGE_IDS])
    more = len(items) - _MESSAGE_IDS
    return f"{shown} and {more} more" if more > 0 else shown


def _staff_name(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


class ReadOnlyAdmin(admin.ModelAdmin):
    """View only: no add, change or delete, whatever the user's permissions."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    max_num = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Customers, accounts, positions ---------------------------------------------


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "created_at")
    search_fields = ("user__username",)
    list_select_related = ("user",)


class LatestFirstFormSet(BaseInlineFormSet):
    """Only the newest ``LEDGER_INLINE_LIMIT`` rows of the parent."""

    def get_queryset(self):
        if not hasattr(self, "_limited"):
            self._limited = super().get_queryset()[:LEDGER_INLINE_LIMIT]
        return self._limited


class LedgerEntryInline(ReadOnlyInline):
    model = LedgerEntry
    formset = LatestFirstFormSet
    fk_name = "account"
    verbose_name_plural = f"ledger entries (latest {LEDGER_INLINE_LIMIT})"
    fields = ("created_at", "kind", "bucket", "asset", "amount", "trade", "memo")
    readonly_fields = fields
    ordering = ("-created_at", "-id")


class PositionInline(ReadOnlyInline):
    model = Position
    fields = ("symbol", "quantity", "reserved_quantity", "updated_at")
    readonly_fields = fields
    ordering = ("symbol",)


MAX_ADJUSTMENT = Decimal("1000000000")


class AdjustBalanceForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=20,
        decimal_places=CASH_PLACES,
        # Far above any real correction, far below the column's range.
        max_value=MAX_ADJUSTMENT,
        min_value=-MAX_ADJUSTMENT,
        help_text=f"{CASH_ASSET}; negative to debit.",
    )
    reason = forms.CharField(
        max_length=200, help_text="Recorded in the ledger entry's memo."
    )


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "customer",
        "cash",
        "reserved_cash",
        "buying_power",
        "updated_at",
        "adjust_link",
    )
    list_select_related = ("customer__user",)
    search_fields = ("customer__user__username",)
    fields = ("customer", "cash", "reserved_cash", "buying_power", "updated_at")
    readonly_fields = ("buying_power",)
    inlines = [PositionInline, LedgerEntryInline]

    @admin.display(description="buying power")
    def buying_power(self, obj: Account):
        return obj.buying_power

    @admin.display(description="")
    def adjust_link(self, obj: Account) -> str:
        url = reverse("admin:broker_account_adjust", args=[obj.pk])
        return format_html('<a href="{}">Adjust balance</a>', url)

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("broker.change_account")

    def get_urls(self):
        custom = [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="broker_account_adjust",
            )
        ]
        return custom + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_adjust": self.has_adjust_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Credit or debit cash through ``account_adjust``: one ledger entry whose
        memo names the reason and the operator."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        account = self.get_object(request, unquote(object_id))
        if account is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        form = AdjustBalanceForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            amount = form.cleaned_data["amount"]
            reason = form.cleaned_data["reason"]
            if adjustment_needs_approval(amount):
                return self._request_adjustment(request, account, amount, reason)
            try:
                # The adjustment and its admin log entry commit together.
                with transaction.atomic():
                    account_adjust(
                        account=account,
                        amount=amount,
                        reason=reason,
                        operator=request.user.get_username(),
                    )
                    self.log_change(
                        request,
                        account,
                        f"Adjusted cash by {amount:+} {CASH_ASSET} "
                        f"(now {account.cash}): {reason}",
                    )
            except (IntegrityError, DataError):
                form.add_error(
                    None,
                    f"The database refused an adjustment of {amount:+} {CASH_ASSET}: "
                    "cash may not go below zero nor below the reserved cash "
                    f"(cash {account.cash}, reserved {account.reserved_cash}).",
                )
            except (ValueError, BrokerError) as exc:
                form.add_error(None, f"Adjustment refused: {exc}")
            else:
                self.message_user(
                    request,
                    f"Cash of {account} adjusted by {amount:+} {CASH_ASSET}; "
                    f"cash is now {account.cash}.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:broker_account_change", args=[account.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Adjust balance of {account}",
            "opts": self.opts,
            "original": account,
            "form": form,
            "media": self.media + form.media,
            "approval_limit": settings.ADMIN_ADJUSTMENT_APPROVAL_LIMIT,
            "cash_asset": CASH_ASSET,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request, "admin/broker/account/adjust_balance.html", context
        )

    def _request_adjustment(
        self, request: HttpRequest, account: Account, amount: Decimal, reason: str
    ) -> HttpResponse:
        """Above the approval limit: record a request (and say so in the admin
        log, with the account) for another staff member to decide."""
        with transaction.atomic():
            pending = adjustment_request_create(
                account=account,
                amount=amount,
                reason=reason,
                requested_by=request.user,
            )
            self.log_addition(
                request, pending, f"Requested {amount:+} {CASH_ASSET}: {reason}"
            )
            self.log_change(
                request,
                account,
                f"Requested a cash adjustment of {amount:+} {CASH_ASSET} (request "
                f"#{pending.pk}, awaiting another staff member's approval): {reason}",
            )
        self.message_user(
            request,
            f"An adjustment of {amount:+} {CASH_ASSET} is above the approval limit "
            f"({settings.ADMIN_ADJUSTMENT_APPROVAL_LIMIT} {CASH_ASSET}): request "
            f"#{pending.pk} awaits another staff member's approval; nothing moved.",
            messages.WARNING,
        )
        return HttpResponseRedirect(
            reverse("admin:broker_balanceadjustmentrequest_change", args=[pending.pk])
        )


class AdjustmentStatusFilter(admin.SimpleListFilter):
    """Pending first: what needs someone is what the list opens on."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return BalanceAdjustmentRequest.Status.choices

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(status=self.value())
        return queryset


@admin.register(BalanceAdjustmentRequest)
class BalanceAdjustmentRequestAdmin(ReadOnlyAdmin):
    """Four eyes: adjustments above ADMIN_ADJUSTMENT_APPROVAL_LIMIT wait here for a
    staff member other than the requester to approve (posts the ledger entry) or
    reject them. Each decision is logged on the request and on the account."""

    list_display = (
        "id",
        "account",
        "amount",
        "reason",
        "status",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
    )
    list_filter = (AdjustmentStatusFilter,)
    list_select_related = ("account__customer__user", "requested_by", "decided_by")
    search_fields = ("account__customer__user__username", "reason")
    ordering = ("-requested_at",)
    actions = ["approve_requests", "reject_requests"]

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("broker.change_account")

    @admin.action(
        description="Approve selected adjustments (posts them)",
        permissions=["decide"],
    )
    def approve_requests(self, request: HttpRequest, queryset) -> None:
        self._decide(request, queryset, approve=True)

    @admin.action(description="Reject selected adjustments", permissions=["decide"])
    def reject_requests(self, request: HttpRequest, queryset) -> None:
        self._decide(request, queryset, approve=False)

    def _decide(self, request: HttpRequest, queryset, *, approve: bool) -> None:
        done: list[str] = []
        skipped: list[str] = []
        account_admin = self.admin_site._registry[Account]
        for pending in queryset.order_by("requested_at"):
            try:
                # The decision, its ledger entry and both log entries: one
                # transaction (a refused entry leaves the request pending).
                with transaction.atomic():
                    if approve:
                        decided = adjustment_request_approve(
                            request_id=pending.pk, approver=request.user
                        )
                    else:
                        decided = adjustment_request_reject(
                            request_id=pending.pk, rejecter=request.user
                        )
                    self._log_decision(request, account_admin, decided)
            except BrokerError as exc:
                skipped.append(f"#{pending.pk} ({exc.detail})")
            except (IntegrityError, DataError):
                skipped.append(
                    f"#{pending.pk} (the database refused it: cash may not go below "
                    "zero nor below the reserved cash)"
                )
            else:
                done.append(f"#{decided.pk}")
        verb = "Approved and posted" if approve else "Rejected"
        if done:
            self.message_user(
                request,
                f"{verb} {len(done)} adjustment(s): {_name_all(done)}.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} adjustment(s): {_name_all(skipped)}.",
                messages.WARNING,
            )

    def _log_decision(
        self, request: HttpRequest, account_admin, decided: BalanceAdjustmentRequest
    ) -> None:
        requester = decided.requested_by.get_username()
        decider = decided.decided_by.get_username()
        names = f"requested by {requester}, {decided.status} by {decider}"
        self.log_change(request, decided, f"{decided.status.capitalize()}: {names}.")
        if decided.status == BalanceAdjustmentRequest.Status.APPROVED:
            message = (
                f"Adjusted cash by {decided.amount:+} {CASH_ASSET} (now "
                f"{decided.account.cash}): {decided.reason} — {names} "
                f"(request #{decided.pk})"
            )
        else:
            message = (
                f"Cash adjustment of {decided.amount:+} {CASH_ASSET} not made: "
                f"{names} (request #{decided.pk})"
            )
        account_admin.log_change(request, decided.account, message)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("account", "symbol", "quantity", "reserved_quantity", "updated_at")
    list_filter = ("symbol",)
    search_fields = ("symbol", "account__customer__user__username")
    list_select_related = ("account",)


# --- Trades ---------------------------------------------------------------------


class TradeAgeFilter(admin.SimpleListFilter):
    title = "age"
    parameter_name = "age"

    def lookups(self, request, model_admin):
        return [
            ("last_hour", "Last hour"),
            ("today", "Today"),
            ("older_1h", "Older than 1 hour"),
            ("older_1d", "Older than 1 day"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        value = self.value()
        if value == "last_hour":
            return queryset.filter(created_at__gte=now - timedelta(hours=1))
        if value == "today":
            midnight = timezone.localtime(now).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            return queryset.filter(created_at__gte=midnight)
        if value == "older_1h":
            return queryset.filter(created_at__lt=now - timedelta(hours=1))
        if value == "older_1d":
            return queryset.filter(created_at__lt=now - timedelta(days=1))
        return queryset


class StuckFilter(admin.SimpleListFilter):
    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        seconds = int(stuck_after().total_seconds())
        return [("yes", f"Not terminal, idle > {seconds} s")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(pk__in=ops.stuck_trades().values("pk"))
        return queryset


class NeedsReviewFilter(admin.SimpleListFilter):
    title = "needs review"
    parameter_name = "review"

    def lookups(self, request, model_admin):
        return [("yes", "A report from the exchange was quarantined")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(review_reason="")
        return queryset


class CustomerFilter(admin.SimpleListFilter):
    """One customer's trades, reached from the customer column of the list (a
    choice list of every customer would not fit on the page)."""

    title = "customer"
    parameter_name = "customer"

    def lookups(self, request, model_admin):
        value = self.value()
        if not value:
            return []  # nothing to show until a customer is picked from the list
        customer = (
            Customer.objects.select_related("user").filter(pk=value).first()
            if value.isdigit()
            else None
        )
        return [(value, customer.user.get_username() if customer else "unknown")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(account__customer_id=int(value))


class ExecutionInline(ReadOnlyInline):
    model = Execution
    verbose_name_plural = "fills"
    fields = ("exec_id", "quantity", "price", "executed_at", "created_at")
    readonly_fields = fields
    ordering = ("executed_at", "id")


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "customer_link",
        "side",
        "quantity",
        "symbol",
        "type",
        "status",
        "filled_quantity",
        "average_price",
        "client_order_id",
        "created_at",
        "updated_at",
    )
    list_filter = (
        "status",
        "side",
        "symbol",
        TradeAgeFilter,
        StuckFilter,
        NeedsReviewFilter,
        CustomerFilter,
    )
    search_fields = (
        "id",
        "account__customer__user__username",
        "client_order_id",
        "exchange_order_id",
    )
    list_select_related = ("account__customer__user",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    fieldsets = [
        (
            "Order",
            {
                "fields": (
                    "id",
                    "account",
                    "customer",
                    ("side", "type", "time_in_force"),
                    ("symbol", "quantity", "limit_price", "collar_price"),
                    "client_order_id",
                )
            },
        ),
        (
            "State",
            {
                "fields": (
                    "status",
                    ("filled_quantity", "leaves_quantity", "average_price"),
                    "hold_remaining",
                    "exchange_order_id",
                    "reject_reason",
                    "review_reason",
                )
            },
        ),
        (
            "Times",
            {
                "fields": (
                    ("created_at", "submitted_at", "updated_at"),
                    ("filled_at", "canceled_at", "expired_at", "rejected_at"),
                )
            },
        ),
    ]
    readonly_fields = ("customer", "leaves_quantity")
    inlines = [ExecutionInline]
    actions = ["cancel_trades", "reconcile_trades"]

    @admin.display(description="customer", ordering="account__customer__user__username")
    def customer(self, obj: Trade) -> str:
        return obj.account.customer.user.get_username()

    @admin.display(description="customer", ordering="account__customer__user__username")
    def customer_link(self, obj: Trade) -> str:
        """The customer's name, linking to the list of their trades."""
        return format_html(
            '<a href="?{}={}" title="only this customer\'s trades">{}</a>',
            CustomerFilter.parameter_name,
            obj.account.customer_id,
            self.customer(obj),
        )

    @admin.display(description="leaves")
    def leaves_quantity(self, obj: Trade):
        return obj.leaves_quantity

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("broker.change_trade")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        trade = self.get_object(request, unquote(object_id))
        extra_context = dict(extra_context or {})
        if trade is not None:
            extra_context["timeline"] = ops.trade_timeline(trade)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Cancel selected trades", permissions=["operate"])
    def cancel_trades(self, request: HttpRequest, queryset) -> None:
        requested_by = _staff_name(request)
        done: list[str] = []
        skipped: list[str] = []
        for trade in queryset.select_related("account__customer").order_by(
            "created_at"
        ):
            if trade.status not in CANCELABLE:
                skipped.append(f"{trade.id} ({trade.status})")
                continue
            try:
                updated = trade_request_cancel(
                    customer=trade.account.customer,
                    trade_id=trade.id,
                    requested_by=requested_by,
                )
            except BrokerError as exc:
                skipped.append(f"{trade.id} ({exc.detail})")
                continue
            self.log_change(
                request,
                updated,
                f"Cancel requested by {requested_by}: {trade.status} → "
                f"{updated.status}, trade.cancel_requested enqueued.",
            )
            done.append(str(trade.id))
        if done:
            self.message_user(
                request,
                f"Cancel requested for {len(done)} trade(s): {_name_all(done)}.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} trade(s) that cannot be canceled: "
                f"{_name_all(skipped)}.",
                messages.WARNING,
            )

    @admin.action(
        description="Reconcile selected trades with the exchange",
        permissions=["operate"],
    )
    def reconcile_trades(self, request: HttpRequest, queryset) -> None:
        requested_by = _staff_name(request)
        done: list[str] = []
        skipped: list[str] = []
        for trade in queryset.select_related("account").order_by("created_at"):
            if not is_reconcilable(trade):
                skipped.append(f"{trade.id} ({trade.status})")
                continue
            trade_request_reconcile(trade=trade, requested_by=requested_by)
            self.log_change(
                request,
                trade,
                f"Reconciliation with the exchange requested by {requested_by} "
                f"(status {trade.status}): trade.reconcile_requested enqueued.",
            )
            done.append(str(trade.id))
        if done:
            self.message_user(
                request,
                f"Reconciliation requested for {len(done)} trade(s): "
                f"{_name_all(done)}.",
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                f"Skipped {len(skipped)} trade(s) that are terminal or not yet sent "
                f"to the exchange: {_name_all(skipped)}.",
                messages.WARNING,
            )


@admin.register(Execution)
class ExecutionAdmin(ReadOnlyAdmin):
    list_display = ("exec_id", "trade", "quantity", "price", "executed_at")
    search_fields = ("exec_id", "trade__id")
    list_select_related = ("trade",)
    ordering = ("-executed_at",)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "created_at",
        "account",
        "kind",
        "bucket",
        "asset",
        "amount",
        "trade",
        "memo",
    )
    list_filter = ("kind", "bucket")
    search_fields = ("account__customer__user__username", "trade__id", "memo")
    list_select_related = ("account", "trade")
    ordering = ("-id",)


# --- Outbox, leadership, consumer positions ------------------------------------


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request, model_admin):
        return [("yes", "Published"), ("no", "Unpublished")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True)
        return queryset


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_type", "topic", "key", "created_at", "published_at")
    list_filter = (PublishedFilter, "event_type", "topic")
    search_fields = ("key", "payload__trade_id")
    ordering = ("-id",)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "outbox_lag": ops.outbox_lag()}
        return super().changelist_view(request, extra_context)


@admin.register(TopicLeader)
class TopicLeaderAdmin(ReadOnlyAdmin):
    """The fence rows, plus the live ZooKeeper elections per topic."""

    list_display = ("topic", "holder", "epoch", "since")
    ordering = ("topic",)

    @admin.display(description="since", ordering="elected_at")
    def since(self, obj: TopicLeader):
        return obj.elected_at

    def changelist_view(self, request, extra_context=None):
        live = ops.leadership_live()
        extra_context = {
            **(extra_context or {}),
            "zookeeper_reachable": live is not None,
            "leadership": ops.leadership_overview(live),
        }
        return super().changelist_view(request, extra_context)


@admin.register(ConsumerOffset)
class ConsumerOffsetAdmin(ReadOnlyAdmin):
    list_display = ("topic", "partition", "next_offset", "updated_at")
    list_filter = ("topic",)
    ordering = ("topic", "partition")


@admin.register(FixSession)
class FixSessionAdmin(ReadOnlyAdmin):
    """Each topic's FIX session: the numbers every leader continues from."""

    list_display = (
        "sender_comp_id",
        "topic",
        "next_out_seq",
        "next_in_seq",
        "reset_requested",
        "updated_at",
    )
    ordering = ("sender_comp_id",)


@admin.register(FixJournal)
class FixJournalAdmin(ReadOnlyAdmin):
    """What was sent to the exchange, kept to answer its resend requests."""

    list_display = ("session", "seq", "msg_type", "trade", "sending_time")
    list_filter = ("session", "msg_type")
    search_fields = ("=trade__id", "body")
    ordering = ("-created_at",)


# --- API plumbing ---------------------------------------------------------------


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ("key", "customer", "response_status", "created_at")
    search_fields = ("key", "customer__user__username")
    list_select_related = ("customer__user",)
    # The stored response body is the customer's data: never shown.
    fields = (
        "customer",
        "key",
        "fingerprint",
        "response_status",
        "response_content_type",
        "response_size",
        "created_at",
    )
    readonly_fields = ("response_size",)
    ordering = ("-created_at",)

    @admin.display(description="response size (bytes)")
    def response_size(self, obj: IdempotencyRecord) -> int:
        return len(obj.response_body or b"")


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("yes", "Revoked"), ("no", "Active")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(revoked_at__isnull=True)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    list_display = ("user", "prefix", "created_at", "revoked_at")
    list_filter = (RevokedFilter,)
    search_fields = ("user__username", "prefix")
    list_select_related = ("user",)
    # Only the hash is stored; still no reason to show it.
    fields = ("user", "prefix", "created_at", "revoked_at")
    ordering = ("-created_at",)
    actions = ["revoke_tokens"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("broker.change_apitoken")

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: HttpRequest, queryset) -> None:
        tokens = list(queryset.filter(revoked_at__isnull=True))
        now = timezone.now()
        ApiToken.objects.filter(
            pk__in=[t.pk for t in tokens], revoked_at__isnull=True
        ).update(revoked_at=now)
        for token in tokens:
            self.log_change(request, token, f"Revoked by {_staff_name(request)}.")
        self.message_user(request, f"Revoked {len(tokens)} token(s).", messages.SUCCESS)


# --- Admin index: the dashboard line -------------------------------------------

# The index template extends the stock one (a template named admin/index.html in
# this app would be shadowed by django.contrib.admin's, which comes first in
# INSTALLED_APPS). The default site has no hook for index context, so its index
# view is wrapped here; a custom AdminSite would be the tidier home for this.
admin.site.index_template = "admin/broker/index.html"
_stock_index = admin.site.index


def _index_with_dashboard(request, extra_context=None):
    if request.user.has_perm("broker.view_trade"):
        extra_context = {"dashboard": ops.dashboard(), **(extra_context or {})}
    return _stock_index(request, extra_context)


admin.site.index = _index_with_dashboard


class ReviewedFilter(admin.SimpleListFilter):
    title = "reviewed"
    parameter_name = "reviewed"

    def lookups(self, request, model_admin):
        return [("no", "Not reviewed yet"), ("yes", "Reviewed")]

    def queryset(self, request, queryset):
        if self.value() in ("no", "yes"):
            return queryset.filter(reviewed_at__isnull=self.value() == "no")
        return queryset


@admin.register(QuarantinedMessage)
class QuarantinedMessageAdmin(ReadOnlyAdmin):
    """What the exchange sent that was not booked: garbled, impossible, or failing
    the trust checks (docs/FIX.md). The raw message is kept; nothing moved."""

    list_display = (
        "created_at",
        "session",
        "seq",
        "msg_type",
        "trade",
        "reason",
        "reviewed_at",
    )
    list_filter = (ReviewedFilter, "session", "msg_type")
    search_fields = ("reason", "raw", "=trade__id")
    readonly_fields = (
        "session",
        "seq",
        "msg_type",
        "trade",
        "reason",
        "raw",
        "epoch",
        "created_at",
        "reviewed_at",
    )
    actions = ["mark_reviewed"]

    @admin.action(description="Mark reviewed (the trade's flag is cleared)")
    def mark_reviewed(self, request: HttpRequest, queryset) -> None:
        now = timezone.now()
        marked = 0
        for message in queryset.filter(reviewed_at__isnull=True):
            QuarantinedMessage.objects.filter(pk=message.pk).update(reviewed_at=now)
            if (
                message.trade_id
                and not QuarantinedMessage.objects.filter(
                    trade_id=message.trade_id, reviewed_at__isnull=True
                ).exists()
            ):
                Trade.objects.filter(pk=message.trade_id).update(review_reason="")
            self.log_change(request, message, "marked reviewed")
            marked += 1
        self.message_user(request, f"{marked} quarantined message(s) marked reviewed")


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    """Messages the executors could not process: also on the dead-letter topic."""

    list_display = ("created_at", "topic", "partition", "offset", "reason", "epoch")
    list_filter = ("topic",)
    search_fields = ("reason", "payload")
    readonly_fields = (
        "topic",
        "partition",
        "offset",
        "reason",
        "payload",
        "epoch",
        "created_at",
    )

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "title": "Dead letters"}
        self.message_user(
            request, f"{DeadLetter.objects.count()} dead-lettered messages in total"
        )
        return super().changelist_view(request, extra_context)
