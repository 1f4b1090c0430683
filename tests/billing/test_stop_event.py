"""Every way a session ends announces it (apps.charging.events), and billing prices it once committed."""

from datetime import UTC, datetime, timedelta

from apps.billing.models import SessionCharge
from apps.charging import services as charging
from apps.charging.models import ChargingSession, Connector
from apps.core.tenants import in_schema

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_a_session_the_platform_closes_is_priced_and_held_for_review(db, world, maple_schema,
                                                                       django_capture_on_commit_callbacks):
    with in_schema(maple_schema):
        connector = Connector.objects.get(charge_point__charge_point_id="TEST-MAPLE-1", connector_id=1)
        session = ChargingSession.objects.create(
            charge_point=connector.charge_point, connector=connector, connector_number=1, transaction_id=None,
            started_at=NOW - timedelta(hours=5), meter_start_wh=1000,
        )
        # The car left (the connector reported Available) but no StopTransaction ever came.
        Connector.objects.filter(pk=connector.pk).update(status="Available", status_at=NOW - timedelta(hours=1))
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            closed = charging.sessions_close_stale(now=NOW, stale_after=timedelta(hours=72))
        assert session.pk in closed and callbacks
        charge = SessionCharge.objects.get(session=session)
        assert charge.status == "held" and "no StopTransaction received" in charge.hold_reason
        assert charge.total == 0
