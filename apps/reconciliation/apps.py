from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    name = "apps.reconciliation"

    def ready(self) -> None:
        from apps.reconciliation.services import true_up_lines
        from apps.statements.sources import register_extra_lines

        register_extra_lines(true_up_lines)
