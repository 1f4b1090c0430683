"""What the balancer is told each car needs: the resident's word, else the idTag's history and the usual morning."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.charging import services as charging
from apps.charging.models import ChargePoint, ChargingSession, Connector, ConnectorLimit
from apps.core import live_store
from apps.core.tenants import in_schema
from apps.electrical.models import Circuit
from apps.loadbalancing.inputs import building_inputs, usual_ready_by
from apps.ocpp import live
from tests import factories

LA = ZoneInfo("America/Los_Angeles")
ALICE_TAG = "04A1B2C3D4"


@pytest.fixture
def quiet(world, db):
    """Maple Court without the open sessions other tests left (rolled back afterwards)."""
    with in_schema(world.maple.schema_name):
        ChargingSession.objects.filter(stopped_at__isnull=True).update(stopped_at=timezone.now())
    return world


def _past(charger: ChargePoint, tag: str, energies: list[int], *, before: datetime) -> None:
    """Completed sessions of ``tag``, the last of ``energies`` the most recent."""
    for n, energy in enumerate(energies):
        stopped = before - timedelta(days=len(energies) - n)
        ChargingSession.objects.create(
            charge_point=charger, connector_number=1, id_tag=tag, started_at=stopped - timedelta(hours=3),
            stopped_at=stopped, meter_start_wh=0, meter_stop_wh=energy, energy_wh=energy)


def _start(charger: ChargePoint, number: int, tag: str, at: datetime) -> int:
    return charging.session_start(charge_point_pk=charger.pk, connector_number=number, id_tag=tag,
                                  meter_start=0, timestamp=at, received_at=at).session_pk


def test_the_usual_ready_by_is_the_next_local_morning():
    seven = time(7, 0)
    evening = datetime(2026, 3, 10, 19, 30, tzinfo=LA)
    assert usual_ready_by(started_at=evening, now=evening, zone=LA, at=seven) == datetime(2026, 3, 11, 7, 0, tzinfo=LA)
    night = datetime(2026, 3, 11, 2, 0, tzinfo=LA)
    assert usual_ready_by(started_at=night, now=night, zone=LA, at=seven) == datetime(2026, 3, 11, 7, 0, tzinfo=LA)
    # Still plugged in after the morning: the next one.
    later = datetime(2026, 3, 11, 9, 0, tzinfo=LA)
    assert usual_ready_by(started_at=evening, now=later, zone=LA, at=seven) == datetime(2026, 3, 12, 7, 0, tzinfo=LA)
    # Across the spring-forward night (8 March 2026 in Los Angeles): 07:00 PDT is 14:00 UTC.
    spring = datetime(2026, 3, 7, 22, 0, tzinfo=LA)
    assert usual_ready_by(started_at=spring, now=spring, zone=LA, at=seven).astimezone(UTC) == datetime(
        2026, 3, 8, 14, 0, tzinfo=UTC)


@pytest.mark.django_db
def test_each_car_gets_the_residents_word_or_its_history_or_nothing(quiet):
    world = quiet
    bob_tag = f"B{uuid.uuid4().hex[:7].upper()}"
    new_tag = f"N{uuid.uuid4().hex[:7].upper()}"
    factories.resident(world.maple, f"bob-{uuid.uuid4().hex[:6]}@maple.test", "101", id_tags=(bob_tag,))
    factories.resident(world.maple, f"nina-{uuid.uuid4().hex[:6]}@maple.test", "101", id_tags=(new_tag,))
    charger = factories.charger(world.maple, f"IN-{uuid.uuid4().hex[:8].upper()}", connectors=3)
    now = timezone.now()
    with in_schema(world.maple.schema_name):
        # Alice: 12 sessions; only the last 10 count (the two oldest are huge). One with no energy and one held
        # for review are left out.
        _past(charger, ALICE_TAG, [90_000, 90_000, 8_000, 9_000, 10_000, 11_000, 12_000, 13_000, 14_000, 15_000,
                                   16_000, 17_000], before=now - timedelta(days=1))
        ChargingSession.objects.create(charge_point=charger, connector_number=2, id_tag=ALICE_TAG,
                                       started_at=now - timedelta(hours=30), stopped_at=now - timedelta(hours=29),
                                       energy_wh=0)
        ChargingSession.objects.create(charge_point=charger, connector_number=2, id_tag=ALICE_TAG.lower(),
                                       started_at=now - timedelta(hours=28), stopped_at=now - timedelta(hours=27),
                                       energy_wh=99_000, needs_review=True)
        _past(charger, bob_tag, [5_000, 7_000], before=now - timedelta(days=1))
        alice = _start(charger, 1, ALICE_TAG, now - timedelta(hours=1))
        bob = _start(charger, 2, bob_tag, now - timedelta(hours=1))
        nina = _start(charger, 3, new_tag, now - timedelta(hours=1))
        ready = now + timedelta(hours=5)
        charging.session_needs_set(session_pk=bob, wanted_energy_wh=30_000, ready_by=ready, now=now)
        inputs = building_inputs(now=now)
    by_id = {s.id: s for s in inputs.sessions}
    # Alice said nothing: the median of her last 10 (8..17 kWh: 12.5 kWh), ready by the next 07:00 local.
    usual = usual_ready_by(started_at=now - timedelta(hours=1), now=now, zone=LA, at=time(7, 0))
    assert (by_id[str(alice)].demand_wh, by_id[str(alice)].departure) == (12_500, usual)
    assert by_id[str(alice)].departure.astimezone(LA).time() == time(7, 0)
    # Bob said 30 kWh by a given time: that is what counts, not his history.
    assert (by_id[str(bob)].demand_wh, by_id[str(bob)].departure) == (30_000, ready)
    # Nina has no history and said nothing: no demand info, shared as before.
    assert (by_id[str(nina)].demand_wh, by_id[str(nina)].departure) == (None, None)


@pytest.mark.django_db
def test_the_inputs_take_the_same_queries_for_one_car_or_many(quiet):
    world = quiet
    charger = factories.charger(world.maple, f"QC-{uuid.uuid4().hex[:8].upper()}", connectors=4)
    tags = [f"Q{n}{uuid.uuid4().hex[:6].upper()}" for n in range(4)]
    for n, tag in enumerate(tags):
        factories.resident(world.maple, f"q{n}-{uuid.uuid4().hex[:6]}@maple.test", "101", id_tags=(tag,))
    now = timezone.now()

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            building_inputs(now=now)
        return len(captured.captured_queries)

    with in_schema(world.maple.schema_name):
        for tag in tags:
            _past(charger, tag, [10_000, 20_000, 30_000], before=now - timedelta(days=1))
        _start(charger, 1, tags[0], now - timedelta(hours=1))
        one = count()
        for n, tag in enumerate(tags[1:], start=2):
            _start(charger, n, tag, now - timedelta(hours=1))
        many = count()
        assert len(building_inputs(now=now).sessions) == 4
    assert many == one


@pytest.mark.django_db
def test_each_connector_is_read_with_its_charger_its_circuit_and_its_limit(quiet):
    """What the run reads of each connector, in six queries: its charger's quirks, whether it is enabled and
    connected here, the circuit it hangs on (and its share of it for a charger that refuses 0 A), and whether
    its limit is flagged (it did not follow it: unmanaged)."""
    world = quiet
    quirky = factories.charger(world.maple, f"QK-{uuid.uuid4().hex[:8].upper()}", connectors=2)
    disabled = factories.charger(world.maple, f"DS-{uuid.uuid4().hex[:8].upper()}", connectors=1)
    now = timezone.now()
    redis = live_store.sync_client()
    schema = world.maple.schema_name
    with in_schema(schema):
        supply = Circuit.objects.get(key="supply")
        cabinet = Circuit.objects.create(key=f"cab-{uuid.uuid4().hex[:6]}", parent=supply, phases=1,
                                         max_current_l1_a=20, max_current_l2_a=20, max_current_l3_a=20,
                                         derate=Decimal("0.5"))
        ChargePoint.objects.filter(pk=quirky.pk).update(
            circuit=cabinet, smart_charging_quirks={"integer_amps": True, "zero_rejected": True})
        ChargePoint.objects.filter(pk=disabled.pk).update(enabled=False)
        flagged = Connector.objects.get(charge_point=quirky, connector_id=2)
        ConnectorLimit.objects.create(connector=flagged, desired_a=10, requested_at=now, flagged_at=now)
        _start(quirky, 1, ALICE_TAG, now - timedelta(hours=1))
        for charger in (quirky, disabled):
            redis.hset(live.key(charger.charge_point_id), mapping={
                "connected": "1", "schema": schema, "channel": "test", "last_seen": str(int(now.timestamp()))})
        try:
            with CaptureQueriesContext(connection) as captured:
                inputs = building_inputs(now=now)
        finally:
            redis.delete(live.key(quirky.charge_point_id), live.key(disabled.charge_point_id))
    assert len(captured.captured_queries) <= 6
    by_key = {c.key: c for c in inputs.connectors}
    first, second = by_key[f"{quirky.charge_point_id}#1"], by_key[f"{quirky.charge_point_id}#2"]
    assert (first.node, first.step_a, first.accepts_zero, first.online, first.compliant) == (
        cabinet.key, Decimal(1), False, True, True)
    assert second.compliant is False  # flagged: counted at its maximum
    # A charger that refuses 0 A keeps free its minimum, or its share of the cabinet when less (20 A x 0.5,
    # two guns: 5 A).
    assert first.default_limit_a == Decimal(5)
    off = by_key[f"{disabled.charge_point_id}#1"]
    assert off.online is False and off.default_limit_a == 0
    nodes = {node.key: node for node in inputs.nodes}
    assert nodes[cabinet.key].parent == "supply" and nodes["supply"].parent is None
    assert nodes[cabinet.key].limits_a == (Decimal(20), Decimal(20), Decimal(20))
    assert nodes[cabinet.key].derate == Decimal("0.5")
    assert inputs.safe_ev_budget_a == supply.safe_ev_budget_a
    assert inputs.connector_pks[f"{quirky.charge_point_id}#2"] == flagged.pk
    assert [s.connector for s in inputs.sessions if s.connector.startswith(quirky.charge_point_id)] == [first.key]
