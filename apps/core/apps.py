from django.apps import AppConfig
from django.db.backends.signals import connection_created


class CoreConfig(AppConfig):
    name = "apps.core"

    def ready(self) -> None:
        from apps.core.tenants import forget_search_path

        connection_created.connect(forget_search_path, dispatch_uid="apps.core.forget_search_path")
