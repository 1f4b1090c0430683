from django.apps import AppConfig


class LoadBalancingConfig(AppConfig):
    name = "apps.loadbalancing"
    label = "loadbalancing"

    def ready(self) -> None:
        from apps.charging.events import on_load_changed, on_session_stopped
        from apps.electrical.events import on_site_reading
        from apps.loadbalancing import triggers

        on_site_reading(triggers.site_reading)
        on_load_changed(triggers.load_changed)
        on_session_stopped(triggers.session_stopped)
