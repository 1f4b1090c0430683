"""The REST API and its OpenAPI description on a building's own host (apps/api/views.py)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.api import views

urlpatterns = [
    path("api/v1/chargers/", views.Chargers.as_view(), name="api-chargers"),
    path("api/v1/sessions/", views.Sessions.as_view(), name="api-sessions"),
    path("api/v1/statements/", views.Statements.as_view(), name="api-statements"),
    path("api/v1/tariffs/", views.Tariffs.as_view(), name="api-tariffs"),
    path("api/v1/site-meter-readings/", views.SiteMeterReadings.as_view(), name="api-site-meter-readings"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
