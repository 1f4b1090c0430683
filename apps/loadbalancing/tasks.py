"""The balancer's Celery tasks: a building's run (queued by triggers.py), the periodic refresh, retention."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.core.tenants import all_condominiums, in_condominium, in_schema
from apps.loadbalancing import services, triggers


def _run_building(schema_name: str, why: str) -> int:
    if not settings.LOADBALANCING_ENABLED:
        return 0
    def body(reason: str) -> None:
        with in_schema(schema_name):
            services.building_rebalance(trigger=reason)

    return triggers.run(schema_name, why, body)


@shared_task(name="apps.loadbalancing.tasks.rebalance_building", ignore_result=True)
def rebalance_building(schema_name: str, why: str) -> int:
    return _run_building(schema_name, why)


triggers.set_queue(lambda schema, why: rebalance_building.delay(schema, why))


@shared_task(name="apps.loadbalancing.tasks.rebalance_all", ignore_result=True)
def rebalance_all() -> int:
    """Every building with chargers, periodically: leases renewed, nothing missed."""
    queued = 0
    for condo in all_condominiums():
        queued += triggers.request_now(condo.schema_name, "periodic refresh")
    return queued


@shared_task(name="apps.loadbalancing.tasks.purge_old_runs", ignore_result=True)
def purge_old_runs() -> int:
    deleted = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            deleted += services.runs_purge()
    return deleted
