from django.apps import AppConfig


class VisitorsConfig(AppConfig):
    name = "apps.visitors"

    def ready(self) -> None:
        from apps.charging.events import on_session_stopped
        from apps.visitors.services import visit_stopped

        # apps.charging (a layer below) announces every stop: a visitor's session is marked completed in the
        # stopping transaction, and settled (priced, captured, receipt) once the stop commits.
        on_session_stopped(visit_stopped)
