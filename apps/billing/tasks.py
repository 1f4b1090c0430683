from celery import shared_task

from apps.billing import services
from apps.core.tenants import all_condominiums, in_condominium


@shared_task
def price_pending_sessions() -> int:
    """Every building: finished sessions without a charge yet (a stop whose pricing failed) are priced."""
    priced = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            priced += services.sessions_price_pending()
    return priced
