"""A building's dispatch as if only one charger had ever charged there: for tests that time what a real Celery
worker sends to one charger (the closed loop, the reaction through a worker)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from apps.charging.models import ChargePoint, ChargingSession, ConnectorLimit, LimitDispatch
from apps.core.tenants import in_schema
from apps.ocpp import live


def quiet_building(schema: str, charger: str) -> None:
    """The building as if only ``charger`` had ever charged there."""
    with in_schema(schema):
        ChargingSession.objects.filter(stopped_at__isnull=True).update(stopped_at=timezone.now())
        # Chargers that earlier tests left "connected" in the live state (their fake channels gone) would be sent
        # this building's profiles and never answer: every dispatch round would wait for their time-out (5 s),
        # which is not what these tests measure. They are treated as chargers that did not answer lately (nothing
        # is sent to them until they reconnect), and their old limits are forgotten.
        others = ChargePoint.objects.exclude(charge_point_id=charger)
        others.update(smart_charging_retry_at=timezone.now() + timedelta(days=1), smart_charging_resend=False)
        ConnectorLimit.objects.filter(connector__charge_point__in=others).delete()
        # And a worker an earlier test stopped in the middle of a round leaves the building's dispatch claimed
        # until the claim expires (60 s): the claim is let go.
        LimitDispatch.objects.update(claimed_until=None)
    # The worker emptied the broker as it started: a dispatch an earlier test queued is gone, and its "one is
    # waiting" mark would hold back this building's dispatches until it expires.
    live.unmark(f"dispatch-queued:{schema}")
