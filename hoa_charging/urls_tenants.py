"""URLs of a condominium's host (one of its domains)."""

from django.urls import include, path

from apps.accounts import views as account_views
from apps.core import views as core_views

urlpatterns = [
    path("", include("apps.accounts.urls")),
    path("", core_views.condominium_home, name="home"),
    path("accounts/handoff/", account_views.redeem_handoff, name="redeem_handoff"),
    path("healthz", core_views.healthz, name="healthz"),
    path("capacity/", core_views.capacity_page, name="capacity"),
    path("", include("apps.console.urls_tenant")),
    path("", include("apps.portal.urls_tenant")),
    path("", include("apps.api.urls_tenant")),
    path("", include("apps.ocpp.urls_tenant")),
    path("", include("apps.electrical.urls_tenant")),
    path("", include("apps.billing.urls_tenant")),
    path("", include("apps.charging.urls_tenant")),
    path("", include("apps.payments.urls_tenant")),
    path("", include("apps.audit.urls_tenant")),
    path("", include("apps.reconciliation.urls_tenant")),
    path("", include("apps.visitors.urls_tenant")),
]
