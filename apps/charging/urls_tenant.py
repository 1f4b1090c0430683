"""Charging on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.charging import api

urlpatterns = [
    path("api/v1/sessions/<int:session_pk>/needs", api.session_needs, name="session-needs"),
]
