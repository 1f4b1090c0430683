"""Periodic site-meter work: staleness, and the raw readings' roll-up and retention.

Each task walks every condominium; each is safe to run twice and on any worker.
"""

from __future__ import annotations

from celery import shared_task

from apps.core.tenants import all_condominiums, in_condominium
from apps.electrical import services


@shared_task
def check_site_meters() -> int:
    """Raise or resolve each building's SITE_METER_STALE alert; the number of stale meters."""
    stale = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            stale += len(services.site_meters_check_stale(schema_name=condo.schema_name))
    return stale


@shared_task
def roll_up_site_readings() -> dict[str, int]:
    """15-minute peaks and means of every building's raw readings; raw readings past retention purged."""
    written = purged = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            done = services.site_readings_roll_up_and_purge()
            written += done.quarters_written
            purged += done.readings_purged
    return {"quarters_written": written, "readings_purged": purged}
