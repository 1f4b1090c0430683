"""URLs of a condominium's host (one of its domains)."""

from django.urls import include, path

from apps.core import views as core_views

urlpatterns = [
    path("", include("apps.accounts.urls")),
    path("", core_views.condominium_home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
]
