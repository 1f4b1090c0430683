"""The audit export on a building's host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.audit import views

urlpatterns = [
    # /audit/2026-11.zip, /audit/2026-11.xlsx, /audit/2026-11.pdf, /audit/2026-11?format=pdf
    path("audit/<str:name>", views.audit_file, name="audit-file"),
]
