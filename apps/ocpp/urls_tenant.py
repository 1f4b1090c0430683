"""OCPP pages of a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.ocpp import views

urlpatterns = [
    path("ocpp/frames.csv", views.frames_csv, name="ocpp-frames-csv"),
]
