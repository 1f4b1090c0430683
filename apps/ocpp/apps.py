from django.apps import AppConfig


class OcppConfig(AppConfig):
    name = "apps.ocpp"
    label = "ocpp"

    def ready(self) -> None:
        from apps.charging.local_lists import local_list_sync_queue
        from apps.ocpp.tasks import sync_local_lists

        # apps.charging (the layer below) asks for local-list syncs without importing this app: by this task.
        local_list_sync_queue(sync_local_lists.delay)
