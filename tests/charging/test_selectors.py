"""The reads the load balancer and billing build on, against the real PostgreSQL: what they return, and that
each is one query however many sessions there are (no N+1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.buildings.models import Resident
from apps.charging import selectors, services
from apps.charging.models import ChargingSession
from apps.core.tenants import in_schema
from apps.ocpp.parsing import meter_value_rows
from tests import factories

# A month no other test charges in: the period reads see only this module's sessions.
MARCH_2019 = datetime(2019, 3, 1, tzinfo=UTC)


@pytest.fixture
def maple(db, world):
    with in_schema(world.maple.schema_name):
        yield world.maple


@pytest.fixture
def charger(maple):
    return lambda: factories.charger(maple, f"SEL-{uuid.uuid4().hex[:10].upper()}", connectors=3)


@pytest.fixture
def resident(maple):
    tag = f"S{uuid.uuid4().hex[:12].upper()}"
    factories.resident(maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    resident = Resident.objects.get(id_tags__id_tag=tag)
    resident.allow_concurrent_sessions = True
    resident.save()
    return resident, tag


def start(cp_pk: int, connector: int, tag: str, at: datetime, meter_start: int = 1000) -> services.StartResult:
    return services.session_start(charge_point_pk=cp_pk, connector_number=connector, id_tag=tag,
                                  meter_start=meter_start, timestamp=at, received_at=at + timedelta(seconds=1))


def meter_values(cp_pk: int, connector: int, transaction_id: int, session_pk: int, at: datetime,
                 samples: list[tuple[str, str, str]]) -> None:
    """Store one MeterValues message: (measurand, value, unit) samples at ``at``."""
    payload = [{"timestamp": at.isoformat(), "sampled_value": [
        {"measurand": measurand, "value": value, "unit": unit} for measurand, value, unit in samples]}]
    rows = meter_value_rows(payload, connector_number=connector, transaction_id=transaction_id, received_at=at)
    services.meter_values_store(cp_pk, [{**row, "session_id": session_pk} for row in rows])


def stop(cp_pk: int, transaction_id: int, meter_stop: int, at: datetime) -> None:
    services.session_stop(charge_point_pk=cp_pk, charge_point_id="selectors", transaction_id=transaction_id,
                          meter_stop=meter_stop, timestamp=at, received_at=at + timedelta(seconds=1))


REGISTER = "Energy.Active.Import.Register"


@pytest.fixture
def queries():
    """Assert ``n`` queries in the block, not counting django-tenants' SET search_path (sent when the schema
    changed, so whether one falls in the block depends on what ran before it)."""

    @contextmanager
    def check(n: int) -> Iterator[None]:
        with CaptureQueriesContext(connection) as captured:
            yield
        sql = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith("SET search_path")]
        assert len(sql) == n, sql

    return check


def test_open_sessions_are_what_the_load_balancer_reads_in_one_query(charger, resident, queries):
    resident_obj, tag = resident
    first, second, elsewhere = charger(), charger(), charger()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    a = start(first.pk, 1, tag, t0)
    meter_values(first.pk, 1, a.transaction_id, a.session_pk, t0 + timedelta(minutes=5), [(REGISTER, "1200", "Wh")])
    meter_values(first.pk, 1, a.transaction_id, a.session_pk, t0 + timedelta(minutes=10),
                 [(REGISTER, "1.5", "kWh"), ("Current.Import", "16", "A")])
    b = start(first.pk, 2, tag, t0 + timedelta(minutes=1), meter_start=-1)  # a placeholder meterStart
    meter_values(first.pk, 2, b.transaction_id, b.session_pk, t0 + timedelta(minutes=5), [(REGISTER, "900", "Wh")])
    c = start(second.pk, 1, "UNKNOWN-CARD", t0 + timedelta(minutes=2))
    done = start(second.pk, 2, tag, t0 - timedelta(hours=2))
    stop(second.pk, done.transaction_id, 3000, t0 - timedelta(hours=1))
    start(elsewhere.pk, 1, tag, t0)

    with queries(1):
        sessions = selectors.open_sessions(charge_point_pks=[first.pk, second.pk])

    assert [s.session_pk for s in sessions] == [a.session_pk, b.session_pk, c.session_pk]  # oldest first
    by_pk = {s.session_pk: s for s in sessions}
    assert by_pk[a.session_pk] == selectors.OpenSession(
        session_pk=a.session_pk, transaction_id=a.transaction_id, charge_point_pk=first.pk,
        charge_point_id=first.charge_point_id, connector_pk=first.connectors.get(connector_id=1).pk,
        connector_number=1, resident_id=resident_obj.pk, id_tag=tag, started_at=t0, meter_start_wh=1000,
        energy_wh=500, energy_read_at=t0 + timedelta(minutes=10),  # the latest register, kWh read as Wh
    )
    assert by_pk[b.session_pk].energy_wh is None  # nothing to subtract from
    assert by_pk[c.session_pk].energy_wh is None and by_pk[c.session_pk].resident_id is None
    assert by_pk[c.session_pk].energy_read_at is None

    # The whole building: still one query, with the other charger's session too.
    with queries(1):
        everything = {s.session_pk for s in selectors.open_sessions()}
    assert {a.session_pk, b.session_pk, c.session_pk} < everything and done.session_pk not in everything


def test_sessions_in_period_are_the_sessions_that_ended_in_it(charger, resident, queries):
    resident_obj, tag = resident
    cp = charger()
    april = datetime(2019, 4, 1, tzinfo=UTC)
    ended = []
    for n, (started, stopped) in enumerate([
        (MARCH_2019 - timedelta(hours=2), MARCH_2019 - timedelta(seconds=1)),  # February's
        (MARCH_2019 - timedelta(hours=1), MARCH_2019),  # ended at the first instant of March
        (MARCH_2019 + timedelta(days=3), MARCH_2019 + timedelta(days=3, hours=2)),
        (april - timedelta(hours=1), april),  # April's
    ]):
        session = start(cp.pk, 1 + n % 3, tag, started, meter_start=10_000)
        stop(cp.pk, session.transaction_id, 10_000 + 1000 * (n + 1), stopped)
        ended.append(session)
    start(cp.pk, 3, tag, MARCH_2019 + timedelta(days=5))  # still open: not billed yet

    with queries(1):
        records = selectors.sessions_in_period(start=MARCH_2019, end=april)

    assert [r.session_pk for r in records] == [ended[1].session_pk, ended[2].session_pk]
    first = records[0]
    assert first == selectors.SessionRecord(
        session_pk=ended[1].session_pk, transaction_id=ended[1].transaction_id, charge_point_id=cp.charge_point_id,
        connector_number=2, resident_id=resident_obj.pk, unit_id=resident_obj.unit_id, id_tag=tag,
        authorization_status="Accepted", started_at=MARCH_2019 - timedelta(hours=1), stopped_at=MARCH_2019,
        energy_wh=2000, energy_source=first.energy_source, needs_review=False, review_reason="",
    )
    assert isinstance(first.energy_wh, int) and records[1].energy_wh == 3000


def test_meter_values_of_sessions_in_one_query(charger, resident, queries):
    _, tag = resident
    cp = charger()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    a = start(cp.pk, 1, tag, t0)
    b = start(cp.pk, 2, tag, t0)
    quiet = start(cp.pk, 3, tag, t0)
    meter_values(cp.pk, 1, a.transaction_id, a.session_pk, t0 + timedelta(minutes=10),
                 [(REGISTER, "1500", "Wh"), ("Current.Import", "15.5", "A")])
    meter_values(cp.pk, 1, a.transaction_id, a.session_pk, t0 + timedelta(minutes=5), [(REGISTER, "1.2", "kWh")])
    meter_values(cp.pk, 2, b.transaction_id, b.session_pk, t0 + timedelta(minutes=5), [(REGISTER, "1100", "Wh")])

    with queries(1):
        values = selectors.session_meter_values(session_pks=[a.session_pk, b.session_pk, quiet.session_pk])

    assert [(v.sampled_at, v.measurand, v.value, v.unit, v.normalized) for v in values[a.session_pk]] == [
        (t0 + timedelta(minutes=5), REGISTER, Decimal("1.2"), "kWh", 1200),  # in sampled order
        (t0 + timedelta(minutes=10), REGISTER, Decimal("1500"), "Wh", 1500),
        (t0 + timedelta(minutes=10), "Current.Import", Decimal("15.5"), "A", 15500),
    ]
    assert [v.value for v in values[b.session_pk]] == [Decimal("1100")]
    assert values[quiet.session_pk] == []

    with queries(1):
        registers = selectors.session_meter_values(session_pks=[a.session_pk], measurands=[REGISTER])
    assert [v.normalized for v in registers[a.session_pk]] == [1200, 1500]
    assert ChargingSession.objects.get(pk=a.session_pk).stopped_at is None
