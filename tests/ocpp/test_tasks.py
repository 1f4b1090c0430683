"""The watchdog, frame retention and stale sessions (the tasks' functions, against real Redis and PostgreSQL)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from apps.alerts.models import Alert
from apps.charging.models import ChargePoint, ChargingSession, Connector
from apps.core.tenants import run_in_schema
from apps.ocpp import tasks
from apps.ocpp.models import OcppFrame
from tests.helpers import iso


async def test_silent_charger_goes_offline_with_an_alert_and_comes_back(maple_schema, connected):
    cp_id = connected.charge_point_id
    await connected.boot()
    # Four intervals of silence (300 s each by default) later:
    marked = await run_in_schema(maple_schema, tasks.chargers_mark_offline, time.time() + 4 * 300)
    assert cp_id in marked
    cp = await run_in_schema(maple_schema, ChargePoint.objects.get, charge_point_id=cp_id)
    assert not cp.is_online
    alert = await run_in_schema(maple_schema, Alert.objects.get, charge_point_id=cp_id, kind="charger_offline")
    assert alert.resolved_at is None
    # Within the allowance nothing happens.
    assert cp_id not in await run_in_schema(maple_schema, tasks.chargers_mark_offline, time.time() + 2 * 300)
    await connected.settle(0.3)
    await connected.call("Heartbeat", {})
    cp = await run_in_schema(maple_schema, ChargePoint.objects.get, charge_point_id=cp_id)
    assert cp.is_online
    alert = await run_in_schema(maple_schema, Alert.objects.get, pk=alert.pk)
    assert alert.resolved_at is not None


async def test_frames_older_than_the_retention_are_purged(maple_schema, connected, settings):
    await connected.call("Heartbeat", {})
    await connected.transport.disconnect()
    old = datetime.now(UTC) - timedelta(days=settings.OCPP_FRAME_RETENTION_DAYS + 1)
    await run_in_schema(maple_schema, lambda: OcppFrame.objects.create(
        charge_point_id=connected.charge_point_id, direction="in", raw="[]", received_at=old))
    await run_in_schema("public", tasks.purge_old_frames)
    left = await run_in_schema(maple_schema, lambda: list(OcppFrame.objects.filter(
        charge_point_id=connected.charge_point_id).values_list("received_at", flat=True)))
    assert len(left) == 2 and all(at > old for at in left)


async def test_session_left_open_is_closed_when_the_connector_is_available_again(maple_schema, connected):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    reply = await connected.call("StartTransaction", {"connectorId": 1, "idTag": "NOBODY", "meterStart": 0,
                                                      "timestamp": iso(at)})
    tx = reply[2]["transactionId"]
    available_at = at + timedelta(hours=2)
    await run_in_schema(maple_schema, lambda: Connector.objects.filter(
        charge_point__charge_point_id=connected.charge_point_id, connector_id=1).update(
        status="Available", status_at=available_at))
    await run_in_schema(maple_schema, tasks.close_stale_sessions)
    session = await run_in_schema(maple_schema, ChargingSession.objects.get, transaction_id=tx)
    assert session.stopped_at == available_at and session.stop_reason == "ClosedByPlatform"
    assert session.needs_review
