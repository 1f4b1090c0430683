"""Sessions over OCPP: nothing lost, nothing counted twice."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from apps.buildings.models import Resident
from apps.charging.models import ChargingSession, MeterValue
from apps.core.tenants import run_in_schema
from tests import factories
from tests.helpers import iso

TAG = "set-per-test"


@pytest.fixture(autouse=True)
def _own_resident(world, committed, monkeypatch):
    """A resident of maple-court per test, so that open sessions of other tests are no ConcurrentTx."""
    tag = f"S{uuid.uuid4().hex[:12].upper()}"
    factories.resident(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    monkeypatch.setattr(sys.modules[__name__], "TAG", tag)


async def start(charger, connector=1, meter=1000, at=None, tag=None, unique_id=None):
    tag = tag or TAG
    # Three hours ago, so that the stop times the tests add stay in the past.
    at = at or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    reply = await charger.call("StartTransaction", {"connectorId": connector, "idTag": tag, "meterStart": meter,
                                                    "timestamp": iso(at)}, unique_id=unique_id)
    assert reply[0] == 3, reply
    return reply[2]["transactionId"], at


async def stop(charger, tx, meter, at, **extra):
    reply = await charger.call("StopTransaction", {"transactionId": tx, "meterStop": meter, "timestamp": iso(at),
                                                   **extra})
    assert reply[0] == 3, reply
    return reply


async def sessions_of(schema_name, charge_point_id):
    return await run_in_schema(schema_name, lambda: list(ChargingSession.objects.filter(
        charge_point__charge_point_id=charge_point_id).order_by("id")))


def register(at, wh, unit="Wh"):
    return {"timestamp": iso(at), "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register",
                                                     "unit": unit}]}


async def test_start_and_stop_record_times_meters_resident_and_energy(maple_schema, connected, world):
    tx, at = await start(connected, meter=5000)
    reply = await stop(connected, tx, 12500, at + timedelta(hours=1), reason="EVDisconnected", idTag=TAG)
    assert reply[2]["idTagInfo"]["status"] == "Accepted"
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.transaction_id == tx
    assert session.started_at == at and session.stopped_at == at + timedelta(hours=1)
    assert session.start_received_at is not None and session.stop_received_at is not None
    assert (session.meter_start_wh, session.meter_stop_wh, session.energy_wh) == (5000, 12500, 7500)
    assert session.stop_reason == "EVDisconnected" and session.energy_source == "register"
    resident_pk = await run_in_schema(maple_schema, lambda: Resident.objects.get(id_tags__id_tag=TAG).pk)
    assert session.resident_id == resident_pk and not session.needs_review


async def test_retried_start_gets_the_same_transaction_id(maple_schema, connected):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    first, _ = await start(connected, at=at, unique_id="start-1")
    again, _ = await start(connected, at=at, unique_id="start-2")  # the reply to start-1 was lost
    assert first == again
    assert len(await sessions_of(maple_schema, connected.charge_point_id)) == 1


async def test_retried_stop_does_not_count_twice(maple_schema, connected):
    tx, at = await start(connected, meter=0)
    await stop(connected, tx, 3000, at + timedelta(minutes=30))
    await stop(connected, tx, 3000, at + timedelta(minutes=30))
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.energy_wh == 3000


async def test_offline_transaction_with_past_timestamps_is_stored_as_it_happened(maple_schema, connected):
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    tx, _ = await start(connected, meter=100, at=past)
    await stop(connected, tx, 4100, past + timedelta(hours=2), transactionData=[register(past + timedelta(hours=1), 2100)])
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.started_at == past and session.stopped_at == past + timedelta(hours=2)
    assert session.start_received_at > past + timedelta(days=1)
    assert session.energy_wh == 4000 and not session.needs_review


async def test_a_new_start_closes_the_connectors_open_session_even_when_the_clock_went_back(maple_schema, connected):
    """The stop of the first session was lost, then the charger rebooted with its clock six hours behind: its
    next start, dated before the first, still closes the first (messages arrive in order); one open session."""
    first_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    first, _ = await start(connected, meter=1000, at=first_at)
    reply = await connected.call("MeterValues", {"connectorId": 1, "transactionId": first,
                                                 "meterValue": [register(first_at + timedelta(minutes=20), 3000)]})
    assert reply[0] == 3
    second, _ = await start(connected, meter=3000, at=first_at - timedelta(hours=6))
    old, new = await sessions_of(maple_schema, connected.charge_point_id)
    assert (old.transaction_id, new.transaction_id) == (first, second)
    assert old.stopped_at == first_at + timedelta(minutes=20)  # its last reading: never before its own start
    assert old.energy_wh == 2000 and old.needs_review and "clock went back" in old.review_reason
    assert new.stopped_at is None


async def test_charger_clock_in_1970_or_the_future_is_replaced_by_server_time(maple_schema, connected):
    await start(connected, at=datetime(1970, 1, 1, tzinfo=UTC))
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.started_at.year >= 2025 and session.needs_review and "implausible" in session.review_reason


async def test_stop_for_unknown_or_minus_one_transaction_is_acknowledged_and_attached(maple_schema, connected):
    tx, at = await start(connected, meter=1000)
    # The charger never got the transactionId: it stops "-1"; attached to the open session of that tag.
    await stop(connected, -1, 2000, at + timedelta(minutes=20), idTag=TAG)
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.transaction_id == tx and session.stopped_at is not None
    assert session.energy_wh == 1000 and session.needs_review and "-1" in session.review_reason
    # Nothing open any more: an unknown transactionId still gets an answer, and a session to review.
    await stop(connected, 987654, 500, at + timedelta(minutes=40), transactionData=[
        {**register(at + timedelta(minutes=30), 100), "sampledValue": [
            {"value": "100", "measurand": "Energy.Active.Import.Register"}]}])
    sessions = await sessions_of(maple_schema, connected.charge_point_id)
    orphan = sessions[-1]
    assert orphan.transaction_id is None and orphan.needs_review and "987654" in orphan.review_reason
    assert orphan.meter_stop_wh == 500


async def test_meter_values_with_minus_one_transaction_go_to_the_open_session(maple_schema, connected):
    tx, at = await start(connected, meter=0)
    await connected.call("MeterValues", {"connectorId": 1, "transactionId": -1,
                                         "meterValue": [register(at + timedelta(minutes=5), 400)]})
    await connected.call("MeterValues", {"connectorId": 1, "transactionId": 424242,
                                         "meterValue": [register(at + timedelta(minutes=6), 450)]})
    await stop(connected, tx, 900, at + timedelta(minutes=10))
    rows = await run_in_schema(maple_schema, lambda: list(MeterValue.objects.filter(
        charge_point__charge_point_id=connected.charge_point_id).values_list("session__transaction_id", flat=True)))
    assert rows == [tx, tx]


async def test_register_reset_mid_session_is_not_negative_and_flagged(maple_schema, connected):
    tx, at = await start(connected, meter=50_000)
    await connected.call("MeterValues", {"connectorId": 1, "transactionId": tx,
                                         "meterValue": [register(at + timedelta(minutes=30), 53_000)]})
    # The charger rebooted: its register starts again from zero.
    await connected.call("MeterValues", {"connectorId": 1, "transactionId": tx,
                                         "meterValue": [register(at + timedelta(minutes=40), 200)]})
    await stop(connected, tx, 1_200, at + timedelta(minutes=50))
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.energy_wh == 3000 + 200 + 1000
    assert session.needs_review and "reset" in session.review_reason


async def test_missing_or_placeholder_meter_stop_uses_the_samples(maple_schema, connected):
    tx, at = await start(connected, meter=10_000)
    await connected.call("MeterValues", {"connectorId": 1, "transactionId": tx,
                                         "meterValue": [register(at + timedelta(minutes=30), 13_500)]})
    await stop(connected, tx, 0, at + timedelta(minutes=40))
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.energy_wh == 3_500 and session.energy_source == "samples"
    assert session.needs_review and "placeholder" in session.review_reason


async def test_kwh_labelled_as_wh_gives_no_absurd_energy(maple_schema, connected):
    tx, at = await start(connected, meter=1_234_000)
    # Firmware bug: the register in kWh, labelled Wh.
    await stop(connected, tx, 1_241, at + timedelta(hours=1))
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.energy_wh == 7_000
    assert session.needs_review and "kWh" in session.review_reason


async def test_new_start_on_a_connector_closes_the_session_whose_stop_was_lost(maple_schema, connected):
    tx1, at = await start(connected, meter=0)
    await connected.call("MeterValues", {"connectorId": 1, "transactionId": tx1,
                                         "meterValue": [register(at + timedelta(minutes=30), 2_000)]})
    tx2, _ = await start(connected, meter=2_500, at=at + timedelta(hours=1))
    first, second = await sessions_of(maple_schema, connected.charge_point_id)
    assert first.transaction_id == tx1 and first.stopped_at == at + timedelta(hours=1)
    assert first.energy_wh == 2_000 and first.needs_review
    assert second.transaction_id == tx2 and second.stopped_at is None


async def test_retried_stop_for_an_unknown_transaction_makes_one_session_to_review(maple_schema, connected):
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    data = [register(at - timedelta(minutes=30), 1_000)]
    # The answer to the first copy was lost: the charger sends the same StopTransaction again.
    for _ in range(2):
        await stop(connected, 555_000, 1_800, at, transactionData=data, idTag=TAG)
    [orphan] = await sessions_of(maple_schema, connected.charge_point_id)
    assert orphan.transaction_id is None and orphan.needs_review and "555000" in orphan.review_reason
    assert (orphan.meter_stop_wh, orphan.energy_wh) == (1_800, 800)
    # The same transactionId with another meterStop is another message (a charger reusing its ids).
    await stop(connected, 555_000, 2_500, at + timedelta(minutes=10), idTag=TAG)
    assert len(await sessions_of(maple_schema, connected.charge_point_id)) == 2


async def test_retried_stop_attached_by_tag_is_not_attached_again(maple_schema, connected):
    tx, at = await start(connected, meter=1_000)
    for _ in range(2):  # "-1": the charger never got the transactionId; the first answer was lost too
        await stop(connected, -1, 2_000, at + timedelta(minutes=20), idTag=TAG)
    [session] = await sessions_of(maple_schema, connected.charge_point_id)
    assert session.transaction_id == tx and session.energy_wh == 1_000
