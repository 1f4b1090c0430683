"""The balancer's Celery tasks: a building's run (queued by triggers.py), the periodic refresh, retention."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from apps.core.tenants import all_condominiums, in_condominium, in_schema
from apps.loadbalancing import services, triggers

log = logging.getLogger(__name__)

# Buildings per task of the periodic refresh: a few tasks rather than one per building, whose queueing,
# connection and start cost more than many a run; but enough tasks that the worker's processes share them
# evenly (100 buildings in 5 tasks of 20: one of two processes runs 3 of them, 60 buildings, the other 40).
REFRESH_BATCH = 10


def _run_building(schema_name: str, why: str) -> int:
    if not settings.LOADBALANCING_ENABLED:
        return 0

    def body(reason: str) -> None:
        # A refresh only when the run is the refresh's own: one that took over a request that came in (the
        # pending mark's reason) is a run on an event.
        with in_schema(schema_name):
            services.building_rebalance(trigger=reason, refresh=reason == services.PERIODIC)

    return triggers.run(schema_name, why, body)


@shared_task(name="apps.loadbalancing.tasks.rebalance_building", ignore_result=True)
def rebalance_building(schema_name: str, why: str) -> int:
    return _run_building(schema_name, why)


triggers.set_queue(lambda schema, why: rebalance_building.delay(schema, why))


@shared_task(name="apps.loadbalancing.tasks.rebalance_all", ignore_result=True)
def rebalance_all() -> int:
    """Every building, periodically (nothing missed, limits asked again before half their lease is gone): the
    buildings in batches of REFRESH_BATCH, each batch one task that runs them one after the other. How many
    buildings."""
    if not settings.LOADBALANCING_ENABLED:
        return 0
    schemas = [condo.schema_name for condo in all_condominiums()]
    for start in range(0, len(schemas), REFRESH_BATCH):
        rebalance_buildings.delay(schemas[start:start + REFRESH_BATCH])
    return len(schemas)


@shared_task(name="apps.loadbalancing.tasks.rebalance_buildings", ignore_result=True)
def rebalance_buildings(schema_names: list[str]) -> int:
    """The periodic refresh of these buildings, one after the other, each under its lock like any run (one
    that another worker is running is left to it). A building that fails does not stop the others."""
    runs = 0
    for schema_name in schema_names:
        try:
            runs += _run_building(schema_name, services.PERIODIC)
        except Exception:
            log.exception("periodic balancing run of %s failed", schema_name)
    return runs


@shared_task(name="apps.loadbalancing.tasks.purge_old_runs", ignore_result=True)
def purge_old_runs() -> int:
    deleted = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            deleted += services.runs_purge()
    return deleted
