"""The electrical API of a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.electrical import api

urlpatterns = [
    path("api/v1/site-meters/<str:meter_key>/readings", api.site_meter_readings, name="site-meter-readings"),
]
