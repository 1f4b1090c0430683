"""The building console on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.console import inbox, operate, views

urlpatterns = [
    path("console/", views.building_console, name="console"),
    path("console/chart.json", views.chart, name="console-chart"),
    path("console/operate/<str:charge_point_id>/<int:connector>/", operate.menu, name="console-operate-menu"),
    path("console/operate/<str:charge_point_id>/<int:connector>/<slug:key>/", operate.operate, name="console-operate"),
    path("console/operations/", operate.operations, name="console-operations"),
    path("alerts/", inbox.inbox, name="console-alerts"),
    path("alerts/<int:alert_pk>/acknowledge", inbox.acknowledge, name="console-alert-acknowledge"),
    path("alerts/<int:alert_pk>/resolve", inbox.resolve, name="console-alert-resolve"),
    path("alerts/preferences", inbox.preferences, name="console-alert-preferences"),
]
