from django.urls import path

from apps.ocpp import api

app_name = "ocpp"
urlpatterns = [
    path("chargers/<str:charge_point_id>/commands/<str:action>", api.charger_command, name="charger-command"),
]
