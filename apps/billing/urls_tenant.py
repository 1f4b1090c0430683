"""Billing on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.billing import api

urlpatterns = [
    path("api/v1/connectors/<str:charge_point_id>/<int:connector_id>/quote", api.connector_quote,
         name="connector-quote"),
]
