from django.apps import AppConfig


class ChargingConfig(AppConfig):
    name = "apps.charging"

    def ready(self) -> None:
        from apps.buildings.events import on_cards_changed
        from apps.charging.events import on_session_stopped
        from apps.charging.local_lists import local_list_request_sync
        from apps.charging.smart_charging import default_reset_after_stop

        # A change of cards (apps.buildings, the layer below) leaves every charger's local list out of date.
        on_cards_changed(local_list_request_sync)
        # A charger that refuses TxProfile keeps a session's live limit in its default: reset after each stop.
        on_session_stopped(default_reset_after_stop)
