"""Operations view of the book. Balances, ledger, fills and the outbox are read-only
here: money only moves through the services."""

from django.contrib import admin

from broker.models import (
    Account,
    ConsumerOffset,
    Customer,
    Execution,
    LedgerEntry,
    OutboxEvent,
    Position,
    TopicLeader,
    Trade,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "created_at")
    search_fields = ("user__username",)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ("customer", "cash", "reserved_cash", "buying_power", "updated_at")
    search_fields = ("customer__user__username",)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("account", "symbol", "quantity", "reserved_quantity")
    list_filter = ("symbol",)


class ExecutionInline(admin.TabularInline):
    model = Execution
    extra = 0
    can_delete = False
    readonly_fields = ("exec_id", "quantity", "price", "executed_at")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "account",
        "side",
        "quantity",
        "symbol",
        "status",
        "filled_quantity",
        "average_price",
        "created_at",
        "filled_at",
    )
    list_filter = ("status", "side", "symbol")
    search_fields = ("id", "account__customer__user__username", "exchange_order_id")
    date_hierarchy = "created_at"
    inlines = [ExecutionInline]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "account", "kind", "bucket", "asset", "amount", "trade")
    list_filter = ("kind", "bucket")


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_type", "topic", "key", "created_at", "published_at")
    list_filter = ("event_type", "topic")


@admin.register(TopicLeader)
class TopicLeaderAdmin(ReadOnlyAdmin):
    list_display = ("topic", "holder", "epoch", "elected_at")


@admin.register(ConsumerOffset)
class ConsumerOffsetAdmin(ReadOnlyAdmin):
    list_display = ("topic", "partition", "next_offset", "updated_at")
