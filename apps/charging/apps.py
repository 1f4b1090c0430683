from django.apps import AppConfig


class ChargingConfig(AppConfig):
    name = "apps.charging"

    def ready(self) -> None:
        from apps.buildings.events import on_cards_changed
        from apps.charging.local_lists import local_list_request_sync

        # A change of cards (apps.buildings, the layer below) leaves every charger's local list out of date.
        on_cards_changed(local_list_request_sync)
