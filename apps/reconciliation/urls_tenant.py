"""Reconciliation on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.reconciliation import views

urlpatterns = [
    path("reconciliation/", views.bills, name="reconciliation-bills"),
    path("reconciliation/bills/<int:bill_id>/", views.bill_report, name="reconciliation-bill"),
    path("reconciliation/investment/", views.investment, name="reconciliation-investment"),
    path("residents/<int:resident_id>/summary", views.resident_summary, name="resident-year-summary"),
]
