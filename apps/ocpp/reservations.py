"""ReserveNow / CancelReservation: a connector held for a resident's card until a time.

Sync functions for web requests, tasks and the shell: they store the
reservation (apps.charging.reservations, the database side), send the command through
apps.ocpp.commands and store the charger's answer. StartTransaction with the
reservationId uses it up; the periodic task (or the connector reporting
Available after the end) expires it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from apps.charging.models import ChargePoint, Reservation
from apps.charging.reservations import (
    RESERVATION_ACTIVE,
    reservation_create,
    reservation_record_answer,
    reservation_record_cancelled,
)
from apps.core.tenants import in_condominium
from apps.ocpp import commands
from apps.ocpp.commands import Send, send_through_channel_layer


def reserve_now(schema_name: str, *, charge_point_id: str, connector_number: int, id_tag: str,
                expires_at: datetime, send: Send = send_through_channel_layer) -> Reservation:
    """Reserve; raises ReservationRefused (apps.charging.reservations) when the platform refuses before asking."""
    with in_condominium(schema_name):
        cp = ChargePoint.objects.get(charge_point_id=charge_point_id)
        reservation = reservation_create(charge_point_pk=cp.pk, connector_number=connector_number, id_tag=id_tag,
                                         expires_at=expires_at)
    payload = {
        "connectorId": connector_number, "idTag": reservation.id_tag, "reservationId": reservation.pk,
        "expiryDate": expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if reservation.parent_id_tag:
        payload["parentIdTag"] = reservation.parent_id_tag
    try:
        answer = str(send(schema_name, cp.charge_point_id, "ReserveNow", payload).get("status", ""))
    except commands.CommandTimeout:
        answer = "NoAnswer"
    except commands.ChargerNotConnected:
        answer = "Unavailable"
    except commands.CommandRejected as error:
        answer = "Rejected" if error.error_code != "NotSupported" else "NotSupported"
    with in_condominium(schema_name):
        return reservation_record_answer(reservation_pk=reservation.pk, answer=answer)


def cancel_reservation(schema_name: str, reservation_pk: int, send: Send = send_through_channel_layer) -> str:
    """Cancel on the charger; the charger's answer (Accepted, or Rejected when it no longer holds it)."""
    with in_condominium(schema_name):
        reservation = Reservation.objects.select_related("charge_point").get(pk=reservation_pk)
    if reservation.status not in RESERVATION_ACTIVE:
        return "NotActive"
    answer = str(send(schema_name, reservation.charge_point.charge_point_id, "CancelReservation",
                      {"reservationId": reservation.pk}).get("status", ""))
    if answer in ("Accepted", "Rejected"):
        with in_condominium(schema_name):
            reservation_record_cancelled(reservation_pk=reservation.pk)
    return answer
