"""The resident's pages on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.portal import views

urlpatterns = [
    path("me/", views.home, name="me"),
    path("me/charge/<str:charge_point_id>/<int:connector>/", views.start, name="me-start"),
    path("me/sessions/<int:session_pk>/stop/", views.stop, name="me-stop"),
    path("me/cards/<str:id_tag>/lost/", views.card_lost, name="me-card-lost"),
    path("me/statements/<int:statement_pk>.pdf", views.statement_pdf, name="me-statement-pdf"),
    path("me/autopay/<int:resident_pk>/", views.autopay, name="me-autopay"),
]
