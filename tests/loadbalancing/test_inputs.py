"""What the balancer is told each car needs: the resident's word, else the idTag's history and the usual morning."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.charging import services as charging
from apps.charging.models import ChargePoint, ChargingSession
from apps.core.tenants import in_schema
from apps.loadbalancing.inputs import building_inputs, usual_ready_by
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
