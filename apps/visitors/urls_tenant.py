"""Visitors' pages on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.visitors import views

urlpatterns = [
    path("v/<slug:code>", views.page, name="visitor-page"),
    path("v/<slug:code>/quote", views.quote, name="visitor-quote"),
    path("v/<slug:code>/visits", views.authorize, name="visitor-authorize"),
    path("v/<slug:code>/visits/<str:token>", views.status, name="visitor-status"),
    path("v/<slug:code>/visits/<str:token>/start", views.start, name="visitor-start"),
    path("v/<slug:code>/visits/<str:token>/stop", views.stop, name="visitor-stop"),
    path("visitors/labels.pdf", views.labels_pdf, name="visitor-labels"),
    path("visitors/visits", views.visits_for_managers, name="visitor-visits"),
]
