from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "apps.statements"

    def ready(self) -> None:
        from apps.payments.events import on_payment_event
        from apps.statements.settlement import payment_event

        on_payment_event(payment_event)
