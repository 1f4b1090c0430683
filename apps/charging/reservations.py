"""Reservations, the database side. Call inside the condominium's schema.

A reservation is stored before ReserveNow is sent (its id is the reservationId), gets the charger's
answer, and ends cancelled, used by a StartTransaction, or expired (the periodic task, or the
connector reporting Available after its end). The conversation with the charger (ReserveNow,
CancelReservation) is apps.ocpp.reservations.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.charging.models import ChargePoint, Connector, Reservation
from apps.charging.selectors import ACCEPTED, authorize_id_tag


class ReservationRefused(Exception):
    """The platform does not send this ReserveNow (the reason is the message)."""


RESERVATION_ACTIVE = (Reservation.Status.REQUESTED, Reservation.Status.ACCEPTED)


def reservation_create(
    *, charge_point_pk: int, connector_number: int, id_tag: str, expires_at: datetime,
) -> Reservation:
    """A reservation of a connector for a resident's tag until ``expires_at``, to be sent with ReserveNow."""
    now = timezone.now()
    if expires_at <= now:
        raise ReservationRefused("the reservation must end in the future")
    cp = ChargePoint.objects.filter(pk=charge_point_pk, removed_at__isnull=True, enabled=True).first()
    if cp is None:
        raise ReservationRefused("no such charger")
    if connector_number == 0:
        if str((cp.configuration.get("ReserveConnectorZeroSupported") or {}).get("value", "")).lower() != "true":
            raise ReservationRefused("the charger does not take reservations of connector 0")
    elif not Connector.objects.filter(charge_point=cp, connector_id=connector_number,
                                      removed_at__isnull=True).exists():
        raise ReservationRefused("no such connector")
    decision = authorize_id_tag(id_tag)
    if decision.status != ACCEPTED:
        raise ReservationRefused(f"the card is {decision.status}")
    with transaction.atomic():
        # One live reservation per connector: lock the charger so that two requests cannot both pass.
        ChargePoint.objects.select_for_update().filter(pk=cp.pk).first()
        if Reservation.objects.filter(charge_point=cp, connector_number=connector_number,
                                      status__in=RESERVATION_ACTIVE, expires_at__gt=now).exists():
            raise ReservationRefused("the connector is already reserved")
        return Reservation.objects.create(
            charge_point=cp, connector_number=connector_number, id_tag=id_tag.strip().upper(),
            parent_id_tag=decision.parent_id_tag, expires_at=expires_at, resident_id=decision.resident_id,
        )


def reservation_record_answer(*, reservation_pk: int, answer: str) -> Reservation:
    """The charger's answer to ReserveNow: Accepted, Faulted, Occupied, Rejected, Unavailable.

    "NoAnswer" (a timeout) leaves it requested: the charger may hold it; expiry ends it either way.
    """
    reservation = Reservation.objects.get(pk=reservation_pk)
    reservation.charger_answer = answer[:16]
    reservation.answered_at = timezone.now()
    if reservation.status == Reservation.Status.REQUESTED:
        if answer == "Accepted":
            reservation.status = Reservation.Status.ACCEPTED
        elif answer != "NoAnswer":
            reservation.status = Reservation.Status.REFUSED
            reservation.ended_at = reservation.answered_at
    reservation.save(update_fields=["charger_answer", "answered_at", "status", "ended_at", "updated_at"])
    return reservation


def reservation_record_cancelled(*, reservation_pk: int) -> int:
    """CancelReservation went through (Accepted), or the charger no longer knew it (Rejected)."""
    return Reservation.objects.filter(pk=reservation_pk, status__in=RESERVATION_ACTIVE).update(
        status=Reservation.Status.CANCELLED, ended_at=timezone.now(), updated_at=timezone.now())


def reservations_expire(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    return Reservation.objects.filter(status__in=RESERVATION_ACTIVE, expires_at__lte=now).update(
        status=Reservation.Status.EXPIRED, ended_at=now, updated_at=now)


def reservation_mark_used(*, reservation_pk: int, charge_point_pk: int, at: datetime) -> int:
    """StartTransaction named the reservation: the charger honoured it (even just past its expiry on our clock)."""
    return Reservation.objects.filter(
        pk=reservation_pk, charge_point_id=charge_point_pk,
        status__in=(Reservation.Status.REQUESTED, Reservation.Status.ACCEPTED, Reservation.Status.EXPIRED),
    ).update(status=Reservation.Status.USED, ended_at=at)


def reservations_expire_released(*, charge_point_pk: int, connector_number: int, at: datetime) -> int:
    """The connector reported Available after the reservation's end: the charger let it go, so does the platform."""
    return Reservation.objects.filter(
        charge_point_id=charge_point_pk, connector_number=connector_number, status=Reservation.Status.ACCEPTED,
        expires_at__lte=at,
    ).update(status=Reservation.Status.EXPIRED, ended_at=at)
