from celery import shared_task

from apps.core.tenants import all_condominiums, in_condominium, in_schema
from apps.payments.stripe_client import StripeUnavailable
from apps.visitors import services
from apps.visitors.models import Visit


@shared_task(bind=True, max_retries=5, default_retry_delay=60)
def settle_visit(self, schema_name: str, visit_pk: int) -> str:
    """After a visitor's stop: price, capture or release, receipt. Safe to run twice (the visit's row lock)."""
    with in_schema(schema_name):
        if not Visit.objects.filter(pk=visit_pk).exists():
            return "gone"
        try:
            visit = services.visit_settle(visit_pk=visit_pk)
        except StripeUnavailable as exc:
            raise self.retry(exc=exc) from None
        return visit.status


@shared_task
def sweep_visits() -> dict[str, int]:
    """Every building: visits stuck in a state (a start that never came, a settlement or receipt not done)."""
    total: dict[str, int] = {}
    for condo in all_condominiums():
        with in_condominium(condo):
            for key, count in services.visits_sweep().items():
                total[key] = total.get(key, 0) + count
    return total
