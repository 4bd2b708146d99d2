from django.urls import path

from broker.api import views

urlpatterns = [
    path("trades", views.TradePlaceApi.as_view(), name="trade-place"),
    path("trades/<uuid:trade_id>", views.TradeDetailApi.as_view(), name="trade-detail"),
    path("account", views.AccountApi.as_view(), name="account"),
    path("positions", views.PositionListApi.as_view(), name="position-list"),
]
