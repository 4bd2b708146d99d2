from django.urls import path

from broker.api import views

urlpatterns = [
    path("trades", views.TradeListCreateApi.as_view(), name="trades"),
    path("trades/<uuid:trade_id>", views.TradeDetailApi.as_view(), name="trade-detail"),
    path(
        "trades/<uuid:trade_id>/cancel",
        views.TradeCancelApi.as_view(),
        name="trade-cancel",
    ),
    path("account", views.AccountApi.as_view(), name="account"),
    path("account/deposits", views.DepositApi.as_view(), name="account-deposits"),
    path("positions", views.PositionListApi.as_view(), name="positions"),
    path(
        "positions/<str:symbol>",
        views.PositionDetailApi.as_view(),
        name="position-detail",
    ),
    path("activities", views.ActivityListApi.as_view(), name="activities"),
    path("quotes/<str:symbol>", views.QuoteApi.as_view(), name="quote"),
    path("auth/token", views.TokenApi.as_view(), name="auth-token"),
    path("auth/tokens", views.TokenListApi.as_view(), name="auth-tokens"),
    path(
        "auth/tokens/<str:prefix>",
        views.TokenDetailApi.as_view(),
        name="auth-token-detail",
    ),
]
