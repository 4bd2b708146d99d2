"""One view per operation: parse, authorise (the customer comes from the token),
call a service or selector, render."""

from __future__ import annotations

from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import quotes, selectors
from broker.api.serializers import (
    AccountOutput,
    PositionOutput,
    TradeDetailOutput,
    TradeOutput,
    TradePlaceInput,
)
from broker.models import Customer
from broker.services.placement import trade_place


def _customer(request: Request) -> Customer:
    customer = getattr(request.user, "customer", None)
    if customer is None:  # staff users have no trading account
        raise PermissionDenied("this user is not a trading customer")
    return customer


class TradePlaceApi(APIView):
    def post(self, request: Request) -> Response:
        customer = _customer(request)
        data = TradePlaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        trade = trade_place(
            customer=customer,
            symbol=data.validated_data["symbol"],
            side=data.validated_data["side"],
            quantity=data.validated_data["quantity"],
            order_type=data.validated_data["type"],
            price_source=quotes.last_price,
        )
        return Response(TradeOutput(trade).data, status=status.HTTP_201_CREATED)


class TradeDetailApi(APIView):
    def get(self, request: Request, trade_id: str) -> Response:
        trade = selectors.trade_get(customer=_customer(request), trade_id=trade_id)
        if trade is None:
            raise NotFound("no such trade")
        return Response(TradeDetailOutput(trade).data)


class AccountApi(APIView):
    def get(self, request: Request) -> Response:
        customer = _customer(request)
        account = selectors.account_get(customer=customer)
        return Response(
            AccountOutput(
                {
                    "customer_id": customer.pk,
                    "cash": account.cash,
                    "reserved_cash": account.reserved_cash,
                    "buying_power": account.buying_power,
                }
            ).data
        )


class PositionListApi(APIView):
    def get(self, request: Request) -> Response:
        positions = selectors.position_list(customer=_customer(request))
        return Response(PositionOutput(positions, many=True).data)
