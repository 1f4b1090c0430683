from django.apps import AppConfig


class OcppConfig(AppConfig):
    name = "apps.ocpp"
    label = "ocpp"

    def ready(self) -> None:
        from apps.charging.local_lists import local_list_sync_queue
        from apps.charging.smart_charging import limit_dispatch_queue
        from apps.ocpp.tasks import queue_dispatch, sync_local_lists

        # apps.charging (the layer below) asks for local-list syncs and limit dispatches without importing this
        # app: by these tasks.
        local_list_sync_queue(sync_local_lists.delay)
        limit_dispatch_queue(queue_dispatch)
