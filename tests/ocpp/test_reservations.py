"""ReserveNow / CancelReservation end to end: the platform's reservation, the charger's answer, the
Reserved status, StartTransaction with the reservationId, expiry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async

from apps.buildings.models import IdTag, Resident
from apps.charging.models import ChargingSession, Connector, Reservation
from apps.charging.reservations import ReservationRefused
from apps.core.tenants import run_in_schema
from apps.ocpp import reservations, tasks
from tests import factories
from tests.helpers import iso


@pytest.fixture
def tag(world, committed) -> str:
    tag = f"R{uuid.uuid4().hex[:10].upper()}"
    factories.resident(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    return tag


async def reserve(schema_name: str, charger, **kwargs) -> Reservation:
    pump = asyncio.ensure_future(charger.settle(10))
    try:
        return await sync_to_async(reservations.reserve_now, thread_sensitive=False)(
            schema_name, charge_point_id=charger.charge_point_id, **kwargs)
    finally:
        pump.cancel()


async def test_reservation_accepted_reserved_and_used_by_the_start(maple_schema, connected, tag):
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=30)
    reservation = await reserve(maple_schema, connected, connector_number=2, id_tag=tag.lower(), expires_at=until)
    assert reservation.status == Reservation.Status.ACCEPTED and reservation.charger_answer == "Accepted"
    resident_pk = await run_in_schema(maple_schema, lambda: Resident.objects.get(id_tags__id_tag=tag).pk)
    assert reservation.resident_id == resident_pk and reservation.answered_at is not None
    action, payload = connected.received_calls[-1]
    assert action == "ReserveNow"
    # The resident's household (their unit, as commissioning makes it) goes with the card.
    assert payload == {"connectorId": 2, "idTag": tag, "reservationId": reservation.pk, "expiryDate": iso(until),
                       "parentIdTag": f"UNIT-{tag[:8]}"}

    # The connector shows it, and the platform keeps that status.
    await connected.call("StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Reserved"})
    connector = await run_in_schema(maple_schema, Connector.objects.get,
                                    charge_point__charge_point_id=connected.charge_point_id, connector_id=2)
    assert connector.status == "Reserved"

    # A second reservation of the same connector is refused before the charger is asked.
    asked = len(connected.received_calls)
    with pytest.raises(ReservationRefused, match="already reserved"):
        await reserve(maple_schema, connected, connector_number=2, id_tag=tag, expires_at=until)
    assert len(connected.received_calls) == asked

    started = await connected.call("StartTransaction", {
        "connectorId": 2, "idTag": tag, "meterStart": 0, "timestamp": iso(datetime.now(UTC)),
        "reservationId": reservation.pk})
    assert started[2]["idTagInfo"]["status"] == "Accepted"
    reservation = await run_in_schema(maple_schema, Reservation.objects.get, pk=reservation.pk)
    assert reservation.status == Reservation.Status.USED and reservation.ended_at is not None
    session = await run_in_schema(maple_schema, ChargingSession.objects.get, transaction_id=started[2]["transactionId"])
    assert session.reservation_id == reservation.pk


@pytest.mark.parametrize("answer", ["Faulted", "Occupied", "Rejected", "Unavailable"])
async def test_charger_refusals_are_stored(maple_schema, connected, tag, answer):
    connected.answers["ReserveNow"] = {"status": answer}
    reservation = await reserve(maple_schema, connected, connector_number=1, id_tag=tag,
                                expires_at=datetime.now(UTC) + timedelta(minutes=10))
    assert reservation.status == Reservation.Status.REFUSED and reservation.charger_answer == answer
    # Refused: the connector is free to reserve again.
    connected.answers["ReserveNow"] = {"status": "Accepted"}
    again = await reserve(maple_schema, connected, connector_number=1, id_tag=tag,
                          expires_at=datetime.now(UTC) + timedelta(minutes=10))
    assert again.status == Reservation.Status.ACCEPTED


async def test_cancel_and_expiry(maple_schema, connected, tag):
    until = datetime.now(UTC) + timedelta(minutes=20)
    first = await reserve(maple_schema, connected, connector_number=1, id_tag=tag, expires_at=until)
    pump = asyncio.ensure_future(connected.settle(10))
    answer = await sync_to_async(reservations.cancel_reservation, thread_sensitive=False)(maple_schema, first.pk)
    pump.cancel()
    assert answer == "Accepted"
    assert connected.received_calls[-1] == ("CancelReservation", {"reservationId": first.pk})
    first = await run_in_schema(maple_schema, Reservation.objects.get, pk=first.pk)
    assert first.status == Reservation.Status.CANCELLED and first.ended_at is not None

    second = await reserve(maple_schema, connected, connector_number=1, id_tag=tag, expires_at=until)
    assert second.status == Reservation.Status.ACCEPTED
    # Later than its end: the periodic task expires it.
    await run_in_schema(maple_schema, lambda: Reservation.objects.filter(pk=second.pk).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await run_in_schema("public", tasks.expire_reservations)
    second = await run_in_schema(maple_schema, Reservation.objects.get, pk=second.pk)
    assert second.status == Reservation.Status.EXPIRED

    # The charger ends a reservation on its own clock: Available after the end expires it too.
    third = await reserve(maple_schema, connected, connector_number=1, id_tag=tag, expires_at=until)
    await run_in_schema(maple_schema, lambda: Reservation.objects.filter(pk=third.pk).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    await connected.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    third = await run_in_schema(maple_schema, Reservation.objects.get, pk=third.pk)
    assert third.status == Reservation.Status.EXPIRED


async def test_blocked_card_or_past_time_is_refused_without_asking_the_charger(maple_schema, connected, tag):
    with pytest.raises(ReservationRefused, match="future"):
        await reserve(maple_schema, connected, connector_number=1, id_tag=tag,
                      expires_at=datetime.now(UTC) - timedelta(minutes=1))
    await run_in_schema(maple_schema, lambda: IdTag.objects.filter(id_tag=tag).update(status=IdTag.Status.LOST))
    with pytest.raises(ReservationRefused, match="Blocked"):
        await reserve(maple_schema, connected, connector_number=1, id_tag=tag,
                      expires_at=datetime.now(UTC) + timedelta(minutes=5))
    assert not [a for a, _ in connected.received_calls if a == "ReserveNow"]
