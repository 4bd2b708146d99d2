"""One view per operation: parse, authorise (the customer comes from the token),
call a service or selector, render. Every object lookup is scoped to the customer,
so another customer's trade or position is simply not found (404)."""

from __future__ import annotations

import re
from decimal import Decimal

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
    Throttled,
)
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from broker import quotes, selectors
from broker.api.idempotency import IdempotentPostMixin
from broker.api.origin import request_origin
from broker.api.pagination import LedgerPagination, NewestFirstPagination
from broker.api.serializers import (
    SYMBOL_PATTERN,
    AccountOutput,
    ActivityOutput,
    ActivityPageOutput,
    BalanceOutput,
    DepositInput,
    PositionDetailOutput,
    PositionOutput,
    ProblemOutput,
    QuoteOutput,
    TokenCreateInput,
    TokenInfoOutput,
    TokenOutput,
    TradeDetailOutput,
    TradeFilterInput,
    TradeOutput,
    TradePageOutput,
    TradePlaceInput,
)
from broker.api.throttling import (
    LoginRateThrottle,
    login_attempt_begin,
    login_attempt_succeeded,
)
from broker.errors import SandboxFundingDisabled, SymbolNotFound
from broker.models import Customer
from broker.money import market_value
from broker.services.cancellation import trade_request_cancel
from broker.services.customers import account_deposit
from broker.services.placement import trade_place
from broker.services.tokens import (
    PREFIX_LENGTH,
    token_expires_at,
    token_hash,
    token_issue,
    token_list,
    token_revoke,
    token_revoke_all,
    token_revoke_prefix,
)

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Retry-safe POST: the first response to a key is replayed for 24 h.",
)
ERRORS = {
    (code, "application/problem+json"): ProblemOutput
    for code in (400, 401, 403, 404, 409, 422, 429, 503)
}


def _customer(request: Request) -> Customer:
    customer = getattr(request.user, "customer", None)
    if customer is None:  # staff users have no trading account
        raise PermissionDenied("this user is not a trading customer")
    return customer


class TradeListCreateApi(IdempotentPostMixin, APIView):
    @extend_schema(
        operation_id="trades_place",
        request=TradePlaceInput,
        responses={201: TradeOutput, **ERRORS},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request: Request) -> Response:
        customer = _customer(request)
        data = TradePlaceInput(data=request.data)
        data.is_valid(raise_exception=True)
        order = data.validated_data
        trade = trade_place(
            customer=customer,
            symbol=order["symbol"],
            side=order["side"],
            quantity=order["quantity"],
            order_type=order["type"],
            time_in_force=order["time_in_force"],
            limit_price=order.get("limit_price"),
            client_order_id=order.get("client_order_id"),
            price_source=quotes.last_price,
            origin=request_origin(request),
        )
        return Response(TradeOutput(trade).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="trades_list",
        parameters=[
            TradeFilterInput,
            OpenApiParameter("cursor", str, description="from `next`/`previous`"),
            OpenApiParameter("limit", int, description="page size, at most 500"),
        ],
        responses={200: TradePageOutput, **ERRORS},
    )
    def get(self, request: Request) -> Response:
        customer = _customer(request)
        filters = TradeFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        given = filters.validated_data
        trades = selectors.trade_list(
            customer=customer,
            statuses=given.get("status"),
            symbol=given.get("symbol"),
            side=given.get("side"),
            created_after=given.get("created_after"),
            created_before=given.get("created_before"),
        )
        paginator = NewestFirstPagination()
        page = paginator.paginate_queryset(trades, request, view=self)
        return paginator.get_paginated_response(TradeOutput(page, many=True).data)


class TradeDetailApi(APIView):
    @extend_schema(responses={200: TradeDetailOutput, **ERRORS})
    def get(self, request: Request, trade_id: str) -> Response:
        trade = selectors.trade_get(customer=_customer(request), trade_id=trade_id)
        if trade is None:
            raise NotFound("no such trade")
        return Response(TradeDetailOutput(trade).data)


class TradeCancelApi(IdempotentPostMixin, APIView):
    @extend_schema(
        request=None,
        responses={202: TradeOutput, **ERRORS},
        parameters=[IDEMPOTENCY_PARAMETER],
    )
    def post(self, request: Request, trade_id: str) -> Response:
        trade = trade_request_cancel(customer=_customer(request), trade_id=trade_id)
        # Accepted, not done: the exchange decides (a fill may still win).
        return Response(TradeOutput(trade).data, status=status.HTTP_202_ACCEPTED)


class AccountApi(APIView):
    @extend_schema(responses={200: AccountOutput, **ERRORS})
    def get(self, request: Request) -> Response:
        customer = _customer(request)
        account = selectors.account_get(customer=customer)
        positions_value = sum(
            (
                _market_value(position.quantity, position.symbol)
                for position in selectors.position_list(customer=customer)
            ),
            start=Decimal("0"),
        )
        return Response(
            AccountOutput(
                {
                    "customer_id": customer.pk,
                    "cash": account.cash,
                    "reserved_cash": account.reserved_cash,
                    "buying_power": account.buying_power,
                    "positions_value": positions_value,
                    "equity": account.cash + positions_value,
                }
            ).data
        )


def _current_price(symbol: str) -> Decimal:
    price = quotes.last_price(symbol)
    if price is None:  # delisted: the exchange no longer prices it
        return Decimal("0")
    return price


def _market_value(quantity: Decimal, symbol: str) -> Decimal:
    return market_value(quantity, _current_price(symbol))


class DepositApi(IdempotentPostMixin, APIView):
    @extend_schema(
        request=DepositInput,
        responses={201: BalanceOutput, **ERRORS},
        parameters=[IDEMPOTENCY_PARAMETER],
        description="Sandbox funding: credits cash through a deposit ledger entry. "
        "Refused unless the server runs with SANDBOX_FUNDING=1.",
    )
    def post(self, request: Request) -> Response:
        customer = _customer(request)
        if not settings.SANDBOX_FUNDING:
            raise SandboxFundingDisabled("deposits are only available in the sandbox")
        data = DepositInput(data=request.data)
        data.is_valid(raise_exception=True)
        account = selectors.account_get(customer=customer)
        account_deposit(account=account, amount=data.validated_data["amount"])
        account.refresh_from_db()
        return Response(
            BalanceOutput(
                {
                    "customer_id": customer.pk,
                    "cash": account.cash,
                    "reserved_cash": account.reserved_cash,
                    "buying_power": account.buying_power,
                }
            ).data,
            status=status.HTTP_201_CREATED,
        )


class PositionListApi(APIView):
    @extend_schema(
        operation_id="positions_list",
        responses={200: PositionOutput(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        positions = selectors.position_list(customer=_customer(request))
        return Response(PositionOutput(map(_position, positions), many=True).data)


class PositionDetailApi(APIView):
    @extend_schema(responses={200: PositionDetailOutput, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        customer = _customer(request)
        if not _is_symbol(symbol):
            raise NotFound("no position in this symbol")
        position = selectors.position_get(customer=customer, symbol=symbol.upper())
        if position is None:
            raise NotFound("no position in this symbol")
        price = _current_price(position.symbol)
        body = _position(position)
        body["current_price"] = price
        body["market_value"] = market_value(position.quantity, price)
        return Response(PositionDetailOutput(body).data)


def _is_symbol(value: str) -> bool:
    """Path segments are free text: only a ticker-shaped one reaches the database
    or the exchange's URL (a NUL or '?' would otherwise break either)."""
    return re.fullmatch(SYMBOL_PATTERN, value) is not None


def _position(position) -> dict:
    return {
        "symbol": position.symbol,
        "quantity": position.quantity,
        "reserved_quantity": position.reserved_quantity,
        "available_quantity": position.quantity - position.reserved_quantity,
    }


class ActivityListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str),
            OpenApiParameter("limit", int, description="page size, at most 500"),
        ],
        responses={200: ActivityPageOutput, **ERRORS},
        description="The customer's ledger: every change to cash and positions.",
    )
    def get(self, request: Request) -> Response:
        entries = selectors.activity_list(customer=_customer(request))
        paginator = LedgerPagination()
        page = paginator.paginate_queryset(entries, request, view=self)
        return paginator.get_paginated_response(ActivityOutput(page, many=True).data)


class QuoteApi(APIView):
    @extend_schema(responses={200: QuoteOutput, **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        _customer(request)
        found = quotes.quote(symbol.upper()) if _is_symbol(symbol) else None
        if found is None:
            raise SymbolNotFound(f"{symbol.upper()} is not traded on the exchange")
        return Response(QuoteOutput(found).data)


class TokenApi(APIView):
    """Log in with username/password for a bearer token; DELETE revokes the token
    the request is made with.

    A login is limited per address (LoginRateThrottle) and per username (an
    exponential lockout, counted before the password is hashed, identical for
    unknown usernames); it fails closed with a 503 when Redis is unreachable."""

    def get_permissions(self):
        return (
            [AllowAny()] if self.request.method == "POST" else super().get_permissions()
        )

    def get_throttles(self):
        if self.request.method == "POST":
            return [LoginRateThrottle()]
        return super().get_throttles()

    def perform_authentication(self, request: Request) -> None:
        # Logging in must work even with a stale token in the header.
        if request.method != "POST":
            super().perform_authentication(request)

    @extend_schema(
        request=TokenCreateInput,
        responses={201: TokenOutput, **ERRORS},
        auth=[],
        description="Log in. Over TOKEN_MAX_PER_USER live tokens, the least "
        "recently used one is revoked. Repeated failures lock the username "
        "(429 with Retry-After, growing with each further failure).",
    )
    def post(self, request: Request) -> Response:
        data = TokenCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        username = data.validated_data["username"]
        locked_for = login_attempt_begin(username)
        if locked_for is not None:
            raise Throttled(
                wait=locked_for, detail="too many failed logins for this username."
            )
        user = authenticate(
            request, username=username, password=data.validated_data["password"]
        )
        customer = getattr(user, "customer", None)
        if user is None or customer is None:
            raise AuthenticationFailed("wrong username or password")
        login_attempt_succeeded(username)
        token = token_issue(user=user)
        return Response(
            {"token": token, "customer_id": customer.pk}, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        responses={204: None, **ERRORS},
        request=None,
    )
    def delete(self, request: Request) -> Response:
        token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _token_info(record, current_hash: str) -> dict:
    return {
        "prefix": record.prefix,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "expires_at": token_expires_at(record),
        "current": record.key_hash == current_hash,
    }


class TokenListApi(APIView):
    """The live tokens of the request's user: list them, or revoke them all."""

    @extend_schema(
        operation_id="auth_tokens_list",
        responses={200: TokenInfoOutput(many=True), **ERRORS},
        description="Live (unrevoked, unexpired) tokens, most recently used first.",
    )
    def get(self, request: Request) -> Response:
        current = token_hash(request.auth)
        tokens = [_token_info(t, current) for t in token_list(user=request.user)]
        return Response(TokenInfoOutput(tokens, many=True).data)

    @extend_schema(
        operation_id="auth_tokens_revoke_all",
        request=None,
        responses={204: None, **ERRORS},
        description="Revoke every token of the user, this one included.",
    )
    def delete(self, request: Request) -> Response:
        token_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenDetailApi(APIView):
    @extend_schema(
        operation_id="auth_tokens_revoke",
        request=None,
        responses={204: None, **ERRORS},
        parameters=[
            OpenApiParameter(
                "prefix",
                str,
                OpenApiParameter.PATH,
                description="the token's first 8 characters",
            )
        ],
        description="Revoke the user's live token whose first characters are "
        "`prefix` (as listed by GET /api/v1/auth/tokens).",
    )
    def delete(self, request: Request, prefix: str) -> Response:
        # Only a prefix-shaped segment reaches the database (a NUL would break
        # the query); anything else cannot name a token.
        if re.fullmatch(rf"[A-Za-z0-9_-]{{{PREFIX_LENGTH}}}", prefix) is None:
            raise NotFound("no such token")
        if not token_revoke_prefix(user=request.user, prefix=prefix):
            raise NotFound("no such token")
        return Response(status=status.HTTP_204_NO_CONTENT)
