from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("broker.api.urls")),
]

handler400 = "broker.api.errors.bad_request_view"
handler404 = "broker.api.errors.not_found_view"
handler500 = "broker.api.errors.server_error_view"
