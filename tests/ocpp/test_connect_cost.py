"""What a new connection costs the database: its charger's whole context in one query, online in one UPDATE.

After a restart every charger reconnects at once and these run on the few threads that every connection of
the process shares, so their round trips are the storm's queue (docs/benchmarks.md).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.alerts.models import Alert
from apps.charging import services
from apps.charging.models import ChargePoint, ChargingSession, Connector
from apps.core.tenants import in_schema
from apps.ocpp.consumer import _load_and_mark_online
from tests import factories
from tests.ocpp.conftest import PASSWORD

pytestmark = pytest.mark.usefixtures("committed")


@pytest.fixture
def charger(world):
    charge_point_id = f"COST-{uuid.uuid4().hex[:8].upper()}"
    factories.charger(world.maple, charge_point_id, PASSWORD, connectors=2)
    yield charge_point_id
    with in_schema(world.maple.schema_name):
        ChargingSession.objects.filter(charge_point__charge_point_id=charge_point_id).delete()
        Alert.objects.filter(charge_point_id=charge_point_id).delete()
    factories.charger_retire(world.maple, charge_point_id)


def _statements(schema: str, fn, *args):
    with in_schema(schema):
        ChargePoint.objects.exists()  # the path is set: what follows is the call's own cost
        with CaptureQueriesContext(connection) as captured:
            result = fn(*args)
    return result, [q["sql"] for q in captured.captured_queries]


def test_a_connection_reads_the_whole_context_and_goes_online_in_two_statements(world, charger):
    schema = world.maple.schema_name
    now = timezone.now()
    key = f"ocpp-{uuid.uuid4().hex[:8]}"
    with in_schema(schema):
        cp = ChargePoint.objects.get(charge_point_id=charger)
        ChargePoint.objects.filter(pk=cp.pk).update(status="Available", error_code="NoError", is_online=True)
        first, second = Connector.objects.filter(charge_point=cp).order_by("connector_id")
        Connector.objects.filter(pk=second.pk).update(status="Charging", error_code="NoError",
                                                      max_current_a=Decimal("16.5"), phases=3)
        older = ChargingSession.objects.create(
            charge_point=cp, connector=second, connector_number=2, transaction_id=900_000_001,
            started_at=now - timedelta(hours=2), meter_start_wh=1_000)
        newer = ChargingSession.objects.create(  # its stop never arrived: the later one is the open one
            charge_point=cp, connector=second, connector_number=2, transaction_id=900_000_002,
            started_at=now - timedelta(hours=1), meter_start_wh=2_500)
        ChargingSession.objects.create(  # stopped: not open
            charge_point=cp, connector=first, connector_number=1, transaction_id=900_000_003,
            started_at=now - timedelta(hours=3), stopped_at=now - timedelta(hours=2), meter_start_wh=0)
    factories.site_meter(world.maple, {"id": key, "source": "ocpp", "ocpp": {"charger": charger.lower(),
                                                                               "connector": 2}})
    try:
        ctx, sql = _statements(schema, _load_and_mark_online, charger)
    finally:
        factories.site_meter_retire(world.maple, key)
    assert [s.split()[0] for s in sql] == ["SELECT", "UPDATE"], sql
    assert ctx.charge_point_id == charger and ctx.online and not ctx.removed
    assert {n: c.pk for n, c in ctx.connectors.items()} == {1: first.pk, 2: second.pk}
    assert ctx.connectors[1].max_power_w == 32 * 230 and ctx.connectors[2].max_power_w == int(Decimal("16.5") * 3 * 230)
    assert ctx.statuses == {0: ("Available", "NoError"), 2: ("Charging", "NoError")}
    assert ctx.open_sessions == {2: (900_000_002, newer.pk, 2_500)} and older.pk != newer.pk
    assert ctx.site_meter == (key, 2)
    with in_schema(schema):
        assert ChargePoint.objects.filter(pk=cp.pk, smart_charging_resend=True, is_online=True).exists()


def test_a_charger_that_is_no_site_meter_has_none_and_an_unknown_one_no_context(world, charger):
    ctx, sql = _statements(world.maple.schema_name, _load_and_mark_online, charger)
    # A charger that was offline (a new one) also resolves its offline alert: one statement more.
    assert ctx.site_meter is None and ctx.open_sessions == {} and not ctx.online
    assert [s.split()[0] for s in sql] == ["SELECT", "UPDATE", "UPDATE"] and "alerts_alert" in sql[2]
    missing, sql = _statements(world.maple.schema_name, _load_and_mark_online, "NO-SUCH-CHARGER")
    assert missing is None and len(sql) == 2  # the id as given, then case-insensitively; nothing marked


def test_a_charger_marked_offline_after_its_context_was_read_is_claimed_back_online(world, charger):
    """The context said online, the watchdog marked it offline in between (and raised the alert): the
    connection must still bring it online and resolve the alert, exactly once."""
    schema = world.maple.schema_name
    with in_schema(schema):
        cp = ChargePoint.objects.get(charge_point_id=charger)
        ChargePoint.objects.filter(pk=cp.pk).update(is_online=True)
        assert services.charger_mark_offline(charge_point_pk=cp.pk, last_seen_at=timezone.now())
        assert Alert.objects.filter(charge_point_id=charger, kind=Alert.Kind.CHARGER_OFFLINE,
                                    resolved_at__isnull=True).exists()
        assert services.charger_connected(charge_point_pk=cp.pk, charge_point_id=charger, was_online=True)
        assert not services.charger_connected(charge_point_pk=cp.pk, charge_point_id=charger, was_online=False)
        cp.refresh_from_db()
        assert cp.is_online and cp.smart_charging_resend
        assert not Alert.objects.filter(charge_point_id=charger, kind=Alert.Kind.CHARGER_OFFLINE,
                                        resolved_at__isnull=True).exists()
