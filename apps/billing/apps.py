from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "apps.billing"

    def ready(self) -> None:
        from apps.billing.services import session_price_on_commit
        from apps.charging.events import on_session_stopped

        # apps.charging (a layer below) announces every stop; the session is priced once the stop commits.
        on_session_stopped(session_price_on_commit)
