"""URLs of the company-wide host (PUBLIC_HOST and any host that is not a condominium's)."""

from django.contrib import admin
from django.urls import include, path

from apps.accounts import views as account_views
from apps.console import views as console_views
from apps.core import views as core_views

urlpatterns = [
    path("", include("apps.accounts.urls")),
    path("", core_views.public_home, name="home"),
    path("portfolio/", console_views.portfolio_page, name="portfolio"),
    path("go/<slug:slug>/", account_views.go_to_condominium, name="go_to_condominium"),
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/ocpp/", include("apps.ocpp.urls")),
    path("payments/", include("apps.payments.urls")),
]
