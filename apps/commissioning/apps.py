from django.apps import AppConfig


class CommissioningConfig(AppConfig):
    name = "apps.commissioning"
