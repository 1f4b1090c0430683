"""The building console on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.console import views

urlpatterns = [
    path("console/", views.building_console, name="console"),
]
