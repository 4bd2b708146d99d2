"""Input and output shapes of the API. Decimals travel as strings."""

from decimal import Decimal

from rest_framework import serializers

from broker.models import Trade


class TradePlaceInput(serializers.Serializer):
    symbol = serializers.RegexField(
        r"^[A-Za-z][A-Za-z.]{0,15}$",
        error_messages={"invalid": "a ticker symbol like AAPL is expected"},
    )
    side = serializers.ChoiceField(choices=Trade.Side.choices)
    quantity = serializers.DecimalField(
        max_digits=20, decimal_places=6, min_value=Decimal("0.000001")
    )
    type = serializers.ChoiceField(choices=Trade.Type.choices)

    def validate_symbol(self, value: str) -> str:
        return value.upper()


class FillOutput(serializers.Serializer):
    exec_id = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    price = serializers.DecimalField(max_digits=20, decimal_places=4)
    executed_at = serializers.DateTimeField()


class TradeOutput(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    symbol = serializers.CharField()
    side = serializers.CharField()
    type = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    filled_quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    average_price = serializers.DecimalField(max_digits=20, decimal_places=4)
    reject_reason = serializers.CharField()
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField()
    filled_at = serializers.DateTimeField()


class TradeDetailOutput(TradeOutput):
    fills = FillOutput(many=True)


class AccountOutput(serializers.Serializer):
    customer_id = serializers.IntegerField()
    cash = serializers.DecimalField(max_digits=20, decimal_places=2)
    reserved_cash = serializers.DecimalField(max_digits=20, decimal_places=2)
    buying_power = serializers.DecimalField(max_digits=20, decimal_places=2)


class PositionOutput(serializers.Serializer):
    symbol = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
    reserved_quantity = serializers.DecimalField(max_digits=20, decimal_places=6)
