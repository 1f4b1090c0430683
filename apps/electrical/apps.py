from django.apps import AppConfig


class ElectricalConfig(AppConfig):
    name = "apps.electrical"
