"""Input and output shapes of the API. Decimals travel as strings; field names follow
the common brokerage API conventions (Alpaca's Trading API as the model)."""

from decimal import Decimal

from rest_framework import serializers

from broker.models import Trade
from broker.money import MAX_PRICE, MAX_QUANTITY
from broker.services.placement import order_shape_errors
from broker.services.transitions import OPEN, TERMINAL

# Order bounds (MAX_QUANTITY, MAX_PRICE) come from broker.money, derived from the
# columns so every accepted order's hold fits; placement enforces them too.
MAX_DEPOSIT = Decimal("1000000000")
# A ticker as clients write it (upper-cased before use): letters, then letters or dots.
SYMBOL_PATTERN = r"^[A-Za-z][A-Za-z.]{0,15}$"


class TradePlaceInput(serializers.Serializer):
    symbol = serializers.RegexField(
        SYMBOL_PATTERN,
        error_messages={"invalid": "a ticker symbol like AAPL is expected"},
    )
    side = serializers.ChoiceField(choices=Trade.Side.choices)
    quantity = serializers.DecimalField(
        max_digits=16,
        decimal_places=6,
        min_value=Decimal("0.000001"),
        max_value=MAX_QUANTITY,
    )
    type = serializers.ChoiceField(choices=Trade.Type.choices)
    time_in_force = serializers.ChoiceField(
        choices=Trade.TimeInForce.choices, default=Trade.TimeInForce.DAY
    )
    limit_price = serializers.DecimalField(
        max_digits=12,
        decimal_places=4,
        min_value=Decimal("0.0001"),
        max_value=MAX_PRICE,
        required=False,
        allow_null=True,
    )
    client_order_id = serializers.RegexField(
        r"^[A-Za-z0-9._:-]{1,64}$",
        required=False,
        allow_null=True,
        error_messages={"invalid": "1-64 characters of A-Z a-z 0-9 . _ : -"},
    )

    def validate_symbol(self, value: str) -> str:
        return value.upper()

    def validate(self, data: dict) -> dict:
        errors = order_shape_errors(
            order_type=data["type"],
            quantity=data["quantity"],
            time_in_force=data["time_in_force"],
            limit_price=data.get("limit_price"),
        )
        if errors:
            raise serializers.ValidationError(errors)
        return data


class FillOutput(serializers.Serializer):
    exec_id = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    price = serializers.DecimalField(max_digits=20, decimal_places=4)
    executed_at = serializers.DateTimeField()


class TradeOutput(serializers.Serializer):
    id = serializers.UUIDField()
    client_order_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=Trade.Status.choices)
    symbol = serializers.CharField()
    side = serializers.ChoiceField(choices=Trade.Side.choices)
    type = serializers.ChoiceField(choices=Trade.Type.choices)
    time_in_force = serializers.ChoiceField(choices=Trade.TimeInForce.choices)
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    limit_price = serializers.DecimalField(
        max_digits=20, decimal_places=4, allow_null=True
    )
    filled_quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    average_price = serializers.DecimalField(
        max_digits=20, decimal_places=4, allow_null=True
    )
    reject_reason = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    filled_at = serializers.DateTimeField(allow_null=True)
    canceled_at = serializers.DateTimeField(allow_null=True)
    expired_at = serializers.DateTimeField(allow_null=True)
    rejected_at = serializers.DateTimeField(allow_null=True)


class TradeDetailOutput(TradeOutput):
    fills = FillOutput(many=True)


class TradePageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = TradeOutput(many=True)


class TradeFilterInput(serializers.Serializer):
    status = serializers.CharField(required=False)
    symbol = serializers.RegexField(SYMBOL_PATTERN, required=False)
    side = serializers.ChoiceField(choices=Trade.Side.choices, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)

    # In status-machine order, so the groups read the same everywhere.
    STATUS_GROUPS = {
        "open": [s for s in Trade.Status.values if s in OPEN],
        "closed": [s for s in Trade.Status.values if s in TERMINAL],
    }

    def validate_status(self, value: str) -> list[str]:
        statuses: list[str] = []
        for part in value.split(","):
            part = part.strip()
            if part in self.STATUS_GROUPS:
                statuses.extend(self.STATUS_GROUPS[part])
            elif part in Trade.Status.values:
                statuses.append(part)
            else:
                raise serializers.ValidationError(
                    f"unknown status {part!r}; use open, closed or "
                    + ", ".join(Trade.Status.values)
                )
        return statuses

    def validate_symbol(self, value: str) -> str:
        return value.upper()


class BalanceOutput(serializers.Serializer):
    customer_id = serializers.IntegerField()
    cash = serializers.DecimalField(max_digits=20, decimal_places=2)
    reserved_cash = serializers.DecimalField(max_digits=20, decimal_places=2)
    buying_power = serializers.DecimalField(max_digits=20, decimal_places=2)


class AccountOutput(BalanceOutput):
    positions_value = serializers.DecimalField(max_digits=20, decimal_places=2)
    equity = serializers.DecimalField(max_digits=20, decimal_places=2)


class PositionOutput(serializers.Serializer):
    symbol = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    reserved_quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    available_quantity = serializers.DecimalField(max_digits=20, decimal_places=6)


class PositionDetailOutput(PositionOutput):
    current_price = serializers.DecimalField(max_digits=20, decimal_places=4)
    market_value = serializers.DecimalField(max_digits=20, decimal_places=2)


class ActivityOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    bucket = serializers.CharField()
    asset = serializers.CharField()
    amount = serializers.DecimalField(max_digits=20, decimal_places=6)
    trade_id = serializers.UUIDField(allow_null=True)
    created_at = serializers.DateTimeField()


class ActivityPageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ActivityOutput(many=True)


class DepositInput(serializers.Serializer):
    amount = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=MAX_DEPOSIT,
    )


class QuoteOutput(serializers.Serializer):
    symbol = serializers.CharField()
    bid = serializers.DecimalField(max_digits=20, decimal_places=4)
    ask = serializers.DecimalField(max_digits=20, decimal_places=4)
    last = serializers.DecimalField(max_digits=20, decimal_places=4)


class TokenCreateInput(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=256, trim_whitespace=False)


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()
    customer_id = serializers.IntegerField()


class TokenInfoOutput(serializers.Serializer):
    """A live token, never the token itself: its first characters name it."""

    prefix = serializers.CharField(
        help_text="the token's first 8 characters; "
        "DELETE /api/v1/auth/tokens/{prefix} revokes it"
    )
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(help_text="updated at most once a minute")
    expires_at = serializers.DateTimeField(
        help_text="last_used_at + TOKEN_TTL_HOURS: each use extends it"
    )
    current = serializers.BooleanField(
        help_text="whether this is the token of the request"
    )


class ProblemOutput(serializers.Serializer):
    """RFC 9457 problem details."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False
    )
