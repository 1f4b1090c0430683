"""URLs of the company-wide host (PUBLIC_HOST and any host that is not a condominium's)."""

from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views

urlpatterns = [
    path("", include("apps.accounts.urls")),
    path("", core_views.public_home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
