from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    """The charger simulator (no models): ``manage.py simulate_chargers``."""

    name = "apps.simulator"
