"""Sessions under races: two chargers, or two copies of one message, at the same instant.

Each side on its own connection, made to race every time (tests/races.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.buildings.models import Resident
from apps.charging import selectors, services
from apps.charging.models import ChargePoint, ChargingSession, MeterValue
from apps.core.tenants import in_schema
from apps.ocpp.parsing import meter_value_rows
from tests import factories
from tests.races import race

# In the building's schema (the search path): holds back every INSERT of a session, and nothing that only
# reads or locks rows.
HOLD_SESSION_INSERTS = "LOCK TABLE charging_chargingsession IN SHARE MODE"


@pytest.fixture
def charger_pk(world, committed) -> Callable[[], int]:
    def make() -> int:
        charger = factories.charger(world.maple, f"RACE-{uuid.uuid4().hex[:10].upper()}")
        return charger.pk

    return make


@pytest.fixture
def tag(world, committed) -> str:
    """A card of a resident of maple-court who may not hold two sessions at once."""
    tag = f"C{uuid.uuid4().hex[:12].upper()}"
    factories.resident(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    return tag


@pytest.fixture
def in_maple(maple_schema) -> Callable[[Callable[[], Any]], Any]:
    """Call a function in maple-court's schema, on this test's connection."""
    def call(fn: Callable[[], Any]) -> Any:
        with in_schema(maple_schema):
            return fn()

    return call


def _start(charge_point_pk: int, tag: str, *, at: datetime, connector: int = 1, meter: int = 1000):
    return lambda: services.session_start(
        charge_point_pk=charge_point_pk, connector_number=connector, id_tag=tag, meter_start=meter, timestamp=at,
        received_at=datetime.now(UTC),
    )


def _stop(charge_point_pk: int, transaction_id: int, meter: int, at: datetime, rows: list[dict] | None = None):
    return lambda: services.session_stop(
        charge_point_pk=charge_point_pk, charge_point_id="race", transaction_id=transaction_id, meter_stop=meter,
        timestamp=at, received_at=datetime.now(UTC), reason="EVDisconnected", transaction_data=rows,
    )


def test_one_card_at_two_chargers_at_once_is_accepted_once_and_both_sessions_are_kept(
    maple_schema, in_maple, charger_pk, tag
):
    first, second = charger_pk(), charger_pk()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    assert in_maple(lambda: Resident.objects.get(id_tags__id_tag=tag).allow_concurrent_sessions) is False

    results = race(maple_schema, HOLD_SESSION_INSERTS, _start(first, tag, at=at), _start(second, tag, at=at))

    assert sorted(r.decision.status for r in results) == [selectors.ACCEPTED, selectors.CONCURRENT_TX]
    # The charger may already deliver energy: the refused session is stored too, with what it was told.
    stored = in_maple(lambda: sorted(ChargingSession.objects.filter(id_tag=tag).values_list(
        "charge_point_id", "authorization_status")))
    assert stored == sorted((r_pk, r.decision.status) for r_pk, r in zip((first, second), results, strict=True))
    # A retry of either start gets the answer its charger got the first time.
    for charge_point_pk, result in zip((first, second), results, strict=True):
        again = in_maple(_start(charge_point_pk, tag, at=at))
        assert again.retried and again.transaction_id == result.transaction_id
        assert again.decision.status == result.decision.status


def test_a_retried_start_racing_its_original_is_stored_once(maple_schema, in_maple, charger_pk):
    # An unknown card on an unknown connector: no row to lock, the unique constraint alone decides.
    cp = charger_pk()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    tag = f"U{uuid.uuid4().hex[:12].upper()}"

    results = race(maple_schema, HOLD_SESSION_INSERTS, _start(cp, tag, at=at, connector=7),
                   _start(cp, tag, at=at, connector=7))

    assert results[0].transaction_id == results[1].transaction_id
    assert sorted(r.retried for r in results) == [False, True]
    assert {r.decision.status for r in results} == {selectors.INVALID}
    assert in_maple(lambda: ChargingSession.objects.filter(charge_point_id=cp).count()) == 1


def _orphan_stop(cp: int, at: datetime):
    transaction_data = [{"timestamp": (at - timedelta(minutes=20)).isoformat(), "sampled_value": [
        {"value": "100", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]
    rows = meter_value_rows(transaction_data, connector_number=0, transaction_id=987654, received_at=at)
    return _stop(cp, 987654, 500, at, rows)


def test_two_copies_of_a_stop_for_an_unknown_transaction_make_one_orphan_counted_once(
    maple_schema, in_maple, charger_pk
):
    cp = charger_pk()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

    results = race(maple_schema, HOLD_SESSION_INSERTS, _orphan_stop(cp, at), _orphan_stop(cp, at))

    assert results[0].session_pk == results[1].session_pk
    assert sorted(r.attached for r in results) == ["already-stopped", "orphan"]
    [orphan] = in_maple(lambda: list(ChargingSession.objects.filter(charge_point_id=cp)))
    assert orphan.transaction_id is None and orphan.needs_review and "987654" in orphan.review_reason
    assert (orphan.meter_stop_wh, orphan.energy_wh) == (500, 400)
    assert in_maple(lambda: MeterValue.objects.filter(session=orphan).count()) == 1
    # A third copy, later (the charger never got the answer), still finds it.
    later = in_maple(_orphan_stop(cp, at))
    assert (later.session_pk, later.attached) == (orphan.pk, "already-stopped")
    assert in_maple(lambda: ChargingSession.objects.filter(charge_point_id=cp).count()) == 1


def test_a_stop_racing_the_next_start_on_its_connector_keeps_its_meter_stop(maple_schema, in_maple, charger_pk, tag):
    """The next StartTransaction closes a session whose stop it thinks was lost; the stop arrives meanwhile."""
    cp = charger_pk()
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    first = in_maple(_start(cp, tag, at=at, meter=1_000))
    session_row = "SELECT 1 FROM charging_chargingsession WHERE id = %s FOR UPDATE"

    # The stop queues first for the session's row; the start (which would close it) after it.
    stopped, started = race(maple_schema, session_row, _stop(cp, first.transaction_id, 4_000, at + timedelta(hours=1)),
                            _start(cp, tag, at=at + timedelta(hours=1, minutes=1), meter=4_000),
                            params=[first.session_pk])

    assert stopped.attached == "exact" and not started.retried
    session = in_maple(lambda: ChargingSession.objects.get(pk=first.session_pk))
    assert session.stop_reason == "EVDisconnected" and session.stopped_at == at + timedelta(hours=1)
    assert (session.meter_stop_wh, session.energy_wh, session.needs_review) == (4_000, 3_000, False)
    assert in_maple(lambda: ChargePoint.objects.get(pk=cp).sessions.filter(stopped_at__isnull=True).count()) == 1
