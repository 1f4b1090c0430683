from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The board's audit exports of a building's month. No models: it reads what the other apps keep."""

    name = "apps.audit"
