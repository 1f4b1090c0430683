from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "apps.console"
    verbose_name = "Building console"

    def ready(self) -> None:
        from apps.console.payment_alerts import payment_alert
        from apps.payments.events import on_payment_event

        on_payment_event(payment_alert)  # a failed card payment: an alert for the managers
