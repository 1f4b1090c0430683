"""What a resident does from their phone: start a session on their spot (or a shared connector), stop their own
session, report a card lost. Call inside the building's schema.

    operation = charging_start(user=user, residents=households(user), charge_point_id="TEST-MAPLE-1", number=1,
                               schema_name=schema)
    operation.outcome                      # "accepted": the charger took the RemoteStartTransaction

Each command goes through apps.ocpp.operations (recorded before it is sent, with the charger's answer, on the
building's operations trail with ``via="resident"``). What the resident may not do raises ``Refused`` with the
reason in words, and sends nothing.
"""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from apps.buildings.models import IdTag, Resident
from apps.buildings.services import id_tag_add, id_tag_set_status
from apps.charging.models import ChargingSession
from apps.ocpp import live
from apps.ocpp.models import RemoteOperation
from apps.ocpp.operations import operation_run
from apps.portal import selectors

STARTABLE = ("Available", "Preparing", "Finishing")  # Finishing: the previous car has left, the next one plugs in
VIA = "resident"


class Refused(Exception):
    """The resident may not do this now; the message says why, for the resident."""


def _tag_for(resident: Resident) -> str:
    """The idTag a session started from the phone carries: the household's app tag, made on first use."""
    tags = IdTag.objects.filter(resident=resident, status=IdTag.Status.ACTIVE)
    now = timezone.now()
    usable = [t for t in tags if t.expires_at is None or t.expires_at > now]
    app = next((t for t in usable if t.kind == IdTag.Kind.APP), None)
    if app is not None:
        return app.id_tag
    if IdTag.objects.filter(resident=resident, kind=IdTag.Kind.APP).exists():
        raise Refused(_("Your app card is blocked: ask the building's manager."))
    # Twenty characters at most (OCPP); "APP" and 16 hex digits cannot be mistaken for a printed card number.
    return id_tag_add(resident_id=resident.pk, id_tag=f"APP{secrets.token_hex(8).upper()}", kind=IdTag.Kind.APP,
                      label="Phone").id_tag


def charging_start(*, user, residents: list[Resident], charge_point_id: str, number: int,
                   schema_name: str) -> RemoteOperation:
    """Start a session on a connector the households may use, with the household's app tag."""
    spot = selectors.place(residents, charge_point_id, number)
    if spot is None:
        raise Refused(_("This connector is not one you can use."))
    resident = _household_for(residents, spot)
    if resident.charging_blocked:
        raise Refused(_("Charging is blocked on your account (%(why)s).") % {
            "why": resident.standing_reason or resident.get_account_standing_display()})
    state = live.ChargerLive.from_state(charge_point_id, live.read_sync(charge_point_id))
    if not (state.connected and state.schema == schema_name):
        raise Refused(_("The charger is offline: nothing was sent."))
    status = state.connector(number).status
    if status not in STARTABLE:
        raise Refused(_("The connector is %(status)s: plug in, or try another connector.") % {
            "status": status or _("in an unknown state")})
    with transaction.atomic():
        tag = _tag_for(resident)
    return operation_run(user=user, charge_point_id=charge_point_id, action="RemoteStartTransaction",
                         payload={"connectorId": number, "idTag": tag}, via=VIA, schema_name=schema_name,
                         connector_number=number)


def _household_for(residents: list[Resident], spot: selectors.Place) -> Resident:
    """Whose session it is: the household whose spot it is, else (a shared connector) the first household."""
    return next((r for r in residents if r.unit_id == spot.unit_id), residents[0])


def own_session(residents: list[Resident], session_pk: int) -> ChargingSession | None:
    """A session under way of one of the households (None for anyone else's)."""
    return (ChargingSession.objects.filter(pk=session_pk, resident__in=residents, stopped_at__isnull=True)
            .select_related("charge_point", "connector__parking_spot").first())


def charging_stop(*, user, residents: list[Resident], session_pk: int, schema_name: str) -> RemoteOperation:
    """Ask the charger to end one of the households' sessions."""
    session = own_session(residents, session_pk)
    if session is None:
        raise Refused(_("That session is not under way any more."))
    if session.transaction_id is None:
        raise Refused(_("The charger has not confirmed that session yet: stop it at the charger."))
    return operation_run(user=user, charge_point_id=session.charge_point.charge_point_id,
                         action="RemoteStopTransaction", payload={"transactionId": session.transaction_id},
                         via=VIA, schema_name=schema_name, connector_number=session.connector_number)


def card_report_lost(*, user, residents: list[Resident], id_tag: str) -> IdTag:
    """Mark one of the households' cards lost: every charger of the building refuses it from now on (the chargers'
    local lists are brought up to date at once, apps.charging.local_lists)."""
    tag = IdTag.objects.filter(resident__in=residents, id_tag=id_tag.strip().upper()).first()
    if tag is None:
        raise Refused(_("That card is not one of yours."))
    if tag.status != IdTag.Status.ACTIVE:
        raise Refused(_("That card is already %(status)s.") % {"status": tag.get_status_display().lower()})
    stamp = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
    id_tag_set_status(id_tag=tag.id_tag, status=IdTag.Status.LOST, reason=f"reported lost by {user.email} {stamp}")
    tag.refresh_from_db()
    return tag
