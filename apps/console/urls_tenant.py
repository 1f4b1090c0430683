"""The building console on a building's own host (included from hoa_charging/urls_tenants.py)."""

from django.urls import path

from apps.console import operate, views

urlpatterns = [
    path("console/", views.building_console, name="console"),
    path("console/chart.json", views.chart, name="console-chart"),
    path("console/operate/<str:charge_point_id>/<int:connector>/", operate.menu, name="console-operate-menu"),
    path("console/operate/<str:charge_point_id>/<int:connector>/<slug:key>/", operate.operate, name="console-operate"),
    path("console/operations/", operate.operations, name="console-operations"),
]
