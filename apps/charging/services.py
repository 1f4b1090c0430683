"""Charging sessions, authorization and charger state: the writes. Call inside the condominium's schema.

The OCPP consumer is the interface that calls these; they know nothing about
websockets. Each function is safe to run twice for the same input (chargers
retry whatever they did not get an answer for). Reads are apps.charging.selectors;
the database side of local lists and reservations is apps.charging.local_lists
and apps.charging.reservations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise, alert_resolve
from apps.charging import events, local_lists, metering, reservations, smart_charging
from apps.charging.models import ChargePoint, ChargingSession, Connector, MeterValue, OneTimeTag
from apps.charging.selectors import IdTagDecision, authorize_id_tag, session_find_for_message
from apps.core.bulk import copy_new_rows

logger = logging.getLogger(__name__)



# --- chargers -----------------------------------------------------------------------


def charger_record_boot(
    *, charge_point_pk: int, info: dict[str, str], heartbeat_interval: int, sync_local_list: bool = False,
) -> bool:
    """Store what the charger says about itself. True when it is accepted (enabled).

    ``sync_local_list``: bring its local list up to date (when the configuration is not read again at this
    boot; reading it does that).
    """
    fields = {
        "vendor": info.get("charge_point_vendor", ""),
        "model": info.get("charge_point_model", ""),
        "serial_number": info.get("charge_point_serial_number") or info.get("charge_box_serial_number") or "",
        "firmware_version": info.get("firmware_version", ""),
        "meter_type": info.get("meter_type", ""),
        "meter_serial_number": info.get("meter_serial_number", ""),
        "iccid": info.get("iccid", ""),
        "imsi": info.get("imsi", ""),
    }
    now = timezone.now()
    fields.update(last_boot_at=now, last_seen_at=now, heartbeat_interval_s=heartbeat_interval, updated_at=now)
    # One statement for a charger that is accepted (enabled, not removed), the usual case, and every charger
    # boots at once after a restart: it records the boot and asks for the charging profiles again (a charger
    # that booted holds none of them). Updated nothing: not accepted, the boot is recorded all the same.
    accepted = bool(ChargePoint.objects.filter(pk=charge_point_pk, enabled=True, removed_at__isnull=True).update(
        **fields, **smart_charging.RESEND_FIELDS))
    if not accepted:
        ChargePoint.objects.filter(pk=charge_point_pk).update(**fields)
        return False
    if sync_local_list:
        local_lists.local_list_request_sync(charge_point_pks=[charge_point_pk])
    smart_charging.limit_request_dispatch()
    return True


def charger_mark_online(*, charge_point_pk: int, charge_point_id: str) -> bool:
    """Mark the charger online; True when it was offline (the offline alert is resolved)."""
    now = timezone.now()
    changed = ChargePoint.objects.filter(pk=charge_point_pk, is_online=False).update(
        is_online=True, last_seen_at=now, updated_at=now
    )
    if changed:
        _came_online(charge_point_id)
    return bool(changed)


def charger_connected(*, charge_point_pk: int, charge_point_id: str, was_online: bool) -> bool:
    """A new connection of the charger: online, and its charging profiles sent again (it may follow a restart of
    the charger or of the platform, and lost limits in flight). True when it was offline.

    ``was_online`` is what the connection's context read a moment ago: one UPDATE does it all when that still
    holds (a reconnect storm runs this for every charger); the claim of the offline -> online change, as in
    ``charger_mark_online``, when it does not.
    """
    now = timezone.now()
    charger = ChargePoint.objects.filter(pk=charge_point_pk, removed_at__isnull=True)
    if was_online and charger.filter(is_online=True).update(last_seen_at=now, **smart_charging.RESEND_FIELDS):
        smart_charging.limit_request_dispatch()
        return False
    claimed = charger.filter(is_online=False).update(is_online=True, last_seen_at=now, updated_at=now,
                                                     **smart_charging.RESEND_FIELDS)
    if not claimed:  # another process brought it online in between: only the profiles are left to ask for
        smart_charging.charger_request_resend(charge_point_pk=charge_point_pk)
        return False
    smart_charging.limit_request_dispatch()
    _came_online(charge_point_id)
    return True


def _came_online(charge_point_id: str) -> None:
    alert_resolve(kind=Alert.Kind.CHARGER_OFFLINE, charge_point_id=charge_point_id)
    events.load_changed(f"{charge_point_id} online")


def charger_mark_offline(*, charge_point_pk: int, last_seen_at: datetime | None) -> bool:
    """Claim the online -> offline change (only one process raises the alert)."""
    now = timezone.now()
    cp = ChargePoint.objects.filter(pk=charge_point_pk).first()
    if cp is None:
        return False
    changed = ChargePoint.objects.filter(pk=charge_point_pk, is_online=True).update(
        is_online=False, last_seen_at=last_seen_at or cp.last_seen_at, updated_at=now
    )
    if changed:
        alert_raise(
            kind=Alert.Kind.CHARGER_OFFLINE, charge_point_id=cp.charge_point_id, severity=Alert.Severity.CRITICAL,
            message=f"Charger {cp.charge_point_id} is offline (no message since {last_seen_at or cp.last_seen_at})",
        )
        events.load_changed(f"{cp.charge_point_id} offline")
    return bool(changed)


def charger_record_seen(*, charge_point_pk: int, at: datetime) -> None:
    ChargePoint.objects.filter(pk=charge_point_pk).update(last_seen_at=at)


def charger_store_configuration(*, charge_point_pk: int, configuration: dict) -> None:
    """Keep the configuration read after boot; a charger with a local list gets it brought up to date."""
    cp = ChargePoint.objects.get(pk=charge_point_pk)
    cp.configuration = {**cp.configuration, **configuration}
    cp.configuration_read_at = timezone.now()
    cp.save(update_fields=["configuration", "configuration_read_at", "updated_at"])
    if local_lists.local_list_supported(cp.configuration):
        local_lists.local_list_request_sync(charge_point_pks=[cp.pk])
    # The profiles again, now built for what the configuration says (stack level, rate units).
    smart_charging.charger_request_resend(charge_point_pk=cp.pk)


def connector_record_status(
    *, charge_point_pk: int, charge_point_id: str, connector_number: int, status: str, error_code: str,
    info: str = "", vendor_error_code: str = "", at: datetime,
) -> None:
    """StatusNotification. Faulted opens an alert with the error code; any other status resolves it."""
    if connector_number == 0:
        ChargePoint.objects.filter(pk=charge_point_pk).update(status=status, error_code=error_code, status_at=at)
    else:
        row = Connector.objects.filter(charge_point_id=charge_point_pk, connector_id=connector_number)
        # Only a new status can change what the chargers may draw; a repeated one (a charger re-sending its
        # statuses after a reconnect) is recorded without asking the balancer for a run.
        if row.exclude(status=status).update(status=status, error_code=error_code, status_at=at):
            events.load_changed(f"{charge_point_id}#{connector_number} {status}")
        elif not row.update(error_code=error_code, status_at=at):
            logger.warning("%s: status for unknown connector %s", charge_point_id, connector_number)
    if status == "Faulted":
        detail = ", ".join(x for x in (info, vendor_error_code) if x)
        alert_raise(
            kind=Alert.Kind.CONNECTOR_FAULTED, charge_point_id=charge_point_id, connector_number=connector_number,
            severity=Alert.Severity.CRITICAL,
            message=f"{charge_point_id} connector {connector_number} faulted: {error_code}"
            + (f" ({detail})" if detail else ""),
            details={"error_code": error_code, "info": info, "vendor_error_code": vendor_error_code},
        )
    else:
        alert_resolve(kind=Alert.Kind.CONNECTOR_FAULTED, charge_point_id=charge_point_id,
                      connector_number=connector_number)
    if status == "Available" and connector_number:
        reservations.reservations_expire_released(charge_point_pk=charge_point_pk, connector_number=connector_number,
                                                  at=at)


# --- sessions -----------------------------------------------------------------------


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    session_pk: int
    decision: IdTagDecision
    retried: bool


def _charger_time(value: datetime | None, received_at: datetime, what: str, reasons: list[str]) -> datetime:
    if value is None:
        reasons.append(f"{what} time missing; server time used")
        return received_at
    if not metering.charger_time_is_plausible(value, received_at):
        reasons.append(f"{what} time {value.isoformat()} implausible; server time used")
        return received_at
    return value


def _max_power_w(charge_point_pk: int, connector_number: int) -> int:
    connector = Connector.objects.filter(charge_point_id=charge_point_pk, connector_id=connector_number).first()
    if connector is None:
        return metering.DEFAULT_MAX_POWER_W
    return metering.connector_max_power_w(connector.max_current_a, connector.phases)


def session_start(
    *, charge_point_pk: int, connector_number: int, id_tag: str, meter_start: int, timestamp: datetime | None,
    received_at: datetime, reservation_id: int | None = None,
) -> StartResult:
    """StartTransaction. A retry of one already stored gets the same transactionId and the same answer.

    The session is stored whatever the idTag's status: the charger may have
    started it offline, and the energy was delivered either way.

    One transaction decides and writes, under row locks taken in this order (the same order everywhere,
    so two starts never deadlock): the resident (two starts of one card at two chargers: the second
    waits and then sees the first session, ConcurrentTx), the connector (two starts on one connector
    see each other), then each open session it closes (a StopTransaction that got there first wins).
    NO KEY UPDATE locks: inserting meter values that point at a locked session does not wait for them.
    """
    id_tag = id_tag.strip().upper()
    reasons: list[str] = []
    started_at = _charger_time(timestamp, received_at, "start", reasons)
    if meter_start < 0:
        reasons.append(f"meterStart {meter_start} is a placeholder")
    identity = {
        "charge_point_id": charge_point_pk, "connector_number": connector_number, "id_tag": id_tag,
        "started_at": started_at, "meter_start_wh": meter_start,
    }
    with transaction.atomic():
        decision = authorize_id_tag(id_tag, charge_point_pk=charge_point_pk, connector_number=connector_number,
                                    lock_resident=True)
        # order_by(): the default ordering would join (and lock) the charger's row too.
        connector = Connector.objects.select_for_update(no_key=True).filter(
            charge_point_id=charge_point_pk, connector_id=connector_number).order_by().first()
        existing = ChargingSession.objects.filter(**identity).first()
        if existing is not None:
            return _start_retried(existing, decision)

        # A new start on a connector that still has an open session: that StopTransaction got lost. A charger
        # sends its transaction messages in order (OCPP-J 1.6, 4.7), so a session whose start reached us before
        # this one has ended too when the charger's clock says it began later (a clock reset by a reboot).
        for stale in ChargingSession.objects.select_for_update(no_key=True).filter(
            Q(started_at__lte=started_at) | Q(start_received_at__lte=received_at),
            charge_point_id=charge_point_pk, connector_number=connector_number, stopped_at__isnull=True,
        ):
            if stale.started_at is None or stale.started_at <= started_at:
                _close_without_stop(stale, stopped_at=started_at,
                                    reason="a new StartTransaction on the same connector")
            else:
                heard = MeterValue.objects.filter(session=stale).aggregate(last=Max("sampled_at"))["last"]
                _close_without_stop(stale, stopped_at=max(heard or stale.started_at, stale.started_at),
                                    reason="a new StartTransaction on the same connector, dated before this "
                                           f"session's start ({started_at.isoformat()}): the charger's clock "
                                           "went back")

        if connector is None:
            reasons.append(f"connector {connector_number} is not commissioned on this charger")
        try:
            with transaction.atomic():
                session = ChargingSession.objects.create(
                    **identity, connector=connector, resident_id=decision.resident_id,
                    reservation_id=reservation_id, authorization_status=decision.status,
                    start_received_at=received_at, needs_review=bool(reasons), review_reason="\n".join(reasons),
                )
                session.transaction_id = session.pk
                session.save(update_fields=["transaction_id"])
        except IntegrityError:
            # The same start arrived twice at once (a retry racing the original) and no row lock held the
            # second back (an unknown connector, a card without the resident lock): the constraint did.
            return _start_retried(ChargingSession.objects.get(**identity), decision)
        if decision.one_time_tag_pk is not None:
            # Used up: the row was locked by authorize_id_tag, so of two starts with the tag one is accepted.
            OneTimeTag.objects.filter(pk=decision.one_time_tag_pk, used_at__isnull=True).update(
                used_at=received_at, session=session)
        if reservation_id is not None:
            reservations.reservation_mark_used(reservation_pk=reservation_id, charge_point_pk=charge_point_pk,
                                               at=received_at)
        events.load_changed(f"session {session.transaction_id} started")
    return StartResult(session.transaction_id, session.pk, decision, retried=False)


def _start_retried(existing: ChargingSession, decision: IdTagDecision) -> StartResult:
    # The answer the charger got the first time: since then the resident's session at another charger
    # may have started (ConcurrentTx now) or ended (Accepted now), and the charger acted on the first answer.
    if existing.authorization_status:
        decision = replace(decision, status=existing.authorization_status)
    return StartResult(existing.transaction_id, existing.pk, decision, retried=True)


@dataclass(frozen=True)
class StopResult:
    session_pk: int
    transaction_id: int | None
    attached: str  # "exact", "open-session", "orphan" or "already-stopped"
    decision: IdTagDecision | None


def session_stop(
    *, charge_point_pk: int, charge_point_id: str, transaction_id: int, meter_stop: int,
    timestamp: datetime | None, received_at: datetime, id_tag: str = "", reason: str = "",
    transaction_data: list[dict] | None = None,
) -> StopResult:
    """StopTransaction: always acknowledged; attached to its session where it can be.

    A copy of a StopTransaction already applied (a retry after a lost answer, or two copies at once)
    changes nothing: it is recognised by its message key (the transactionId, meterStop, timestamp and
    idTag it carries), which is unique per charger in the database. That is what finds a session made
    for an unknown transactionId (it has no transactionId of its own) or one attached by tag.
    """
    id_tag = (id_tag or "").strip().upper()
    rows = transaction_data or []
    connector_hint = rows[0]["connector_number"] if rows and rows[0]["connector_number"] else None
    key = _stop_message_key(transaction_id, meter_stop, timestamp, id_tag)
    with transaction.atomic():
        session = ChargingSession.objects.select_for_update(no_key=True).filter(
            charge_point_id=charge_point_pk, stop_message_key=key).first()
        how = "already-stopped"
        if session is None:
            session, how = session_find_for_message(
                charge_point_pk=charge_point_pk, transaction_id=transaction_id, connector_number=connector_hint,
                id_tag=id_tag,
            )
            if session is not None:
                session = ChargingSession.objects.select_for_update(no_key=True).get(pk=session.pk)
        if session is not None and session.stopped_at is not None:
            # A retried StopTransaction: the first one counted, this one changes nothing.
            meter_values_store(charge_point_pk, _attach(rows, session))
            return StopResult(session.pk, session.transaction_id, "already-stopped", None)
        notes: list[str] = []
        if session is None:
            logger.warning("%s: StopTransaction for unknown transactionId %s", charge_point_id, transaction_id)
            try:
                with transaction.atomic():
                    session = ChargingSession.objects.create(
                        charge_point_id=charge_point_pk, connector_number=connector_hint or 0,
                        connector=Connector.objects.filter(charge_point_id=charge_point_pk,
                                                           connector_id=connector_hint or 0).first(),
                        id_tag=id_tag, start_received_at=None, meter_start_wh=None,
                        started_at=min((r["sampled_at"] for r in rows), default=None), stop_message_key=key,
                    )
            except IntegrityError:
                # Another copy of this StopTransaction made the session first (it waited for that commit).
                session = ChargingSession.objects.get(charge_point_id=charge_point_pk, stop_message_key=key)
                meter_values_store(charge_point_pk, _attach(rows, session))
                return StopResult(session.pk, session.transaction_id, "already-stopped", None)
            notes.append(f"StopTransaction for unknown transactionId {transaction_id}; no matching session")
        elif how == "open-session":
            logger.warning("%s: StopTransaction %s attached to open session %s", charge_point_id, transaction_id,
                           session.transaction_id)
            notes.append(f"StopTransaction for transactionId {transaction_id} attached to this open session")
        meter_values_store(charge_point_pk, _attach(rows, session))
        stopped_at = _charger_time(timestamp, received_at, "stop", notes)
        session.stopped_at = stopped_at
        session.stop_received_at = received_at
        session.meter_stop_wh = meter_stop
        session.stop_id_tag = id_tag
        session.stop_reason = reason or "Local"
        session.stop_message_key = key
        for note in notes:
            session.flag(note)
        _compute_energy(session)
        session.save()
        events.session_stopped(session.pk)
    decision = authorize_id_tag(id_tag, charge_point_pk=charge_point_pk) if id_tag else None
    return StopResult(session.pk, session.transaction_id, how, decision)


def _stop_message_key(transaction_id: int, meter_stop: int, timestamp: datetime | None, id_tag: str) -> str:
    """What tells one StopTransaction from another; a retry sends the very same payload.

    The charger's timestamp as sent (UTC), not the stop time kept, which server time replaces when it is
    implausible (and server time differs between copies).
    """
    sent_at = timestamp.astimezone(UTC).isoformat() if timestamp is not None else ""
    return f"{transaction_id}/{meter_stop}/{sent_at}/{id_tag}"


def _attach(rows: list[dict], session: ChargingSession) -> list[dict]:
    return [{**row, "session_id": session.pk, "connector_number": row["connector_number"] or session.connector_number}
            for row in rows]


def _compute_energy(session: ChargingSession) -> None:
    readings = [
        metering.RegisterReading(at, wh)
        for at, value, unit in MeterValue.objects.filter(
            session=session, measurand=metering.REGISTER_MEASURAND, location__in=("", "Outlet")
        ).values_list("sampled_at", "value", "unit").order_by("sampled_at")
        if (wh := metering.to_wh(value, unit)) is not None
    ]
    result = metering.reconstruct_energy(
        meter_start=session.meter_start_wh, meter_stop=session.meter_stop_wh, started_at=session.started_at,
        stopped_at=session.stopped_at, readings=readings,
        max_power_w=_max_power_w(session.charge_point_id, session.connector_number),
    )
    session.energy_wh = result.energy_wh
    session.energy_source = result.source
    for reason in result.review_reasons:
        session.flag(reason)


def _close_without_stop(session: ChargingSession, *, stopped_at: datetime, reason: str) -> None:
    session.stopped_at = stopped_at
    session.stop_received_at = timezone.now()
    session.stop_reason = "ClosedByPlatform"
    session.flag(f"no StopTransaction received; closed after {reason}")
    _compute_energy(session)
    session.save()
    events.session_stopped(session.pk)


def sessions_close_stale(*, now: datetime | None = None, stale_after: timedelta) -> list[int]:
    """Close or flag open sessions whose charger never sent StopTransaction.

    Closed: the connector has since reported Available (the car left) for a while.
    Flagged: nothing at all heard about the session for ``stale_after``.
    """
    now = now or timezone.now()
    touched: list[int] = []
    grace = timedelta(minutes=15)
    open_sessions = ChargingSession.objects.filter(stopped_at__isnull=True).select_related("connector")
    for session in open_sessions:
        connector = session.connector
        if (
            connector is not None and connector.status == "Available" and connector.status_at is not None
            and session.started_at is not None and connector.status_at > session.started_at
            and connector.status_at < now - grace
        ):
            with transaction.atomic():
                locked = ChargingSession.objects.select_for_update().get(pk=session.pk)
                if locked.stopped_at is None:
                    _close_without_stop(locked, stopped_at=connector.status_at,
                                        reason="the connector reported Available")
                    touched.append(locked.pk)
            continue
        last_activity = (
            MeterValue.objects.filter(session=session).order_by("-sampled_at")
            .values_list("received_at", flat=True).first()
        ) or session.start_received_at or session.started_at
        if last_activity is not None and last_activity < now - stale_after and not session.needs_review:
            ChargingSession.objects.filter(pk=session.pk, needs_review=False).update(
                needs_review=True,
                review_reason=(session.review_reason + f"\nopen with no activity since {last_activity.isoformat()}")
                .strip(),
            )
            alert_raise(
                kind=Alert.Kind.STALE_SESSION, charge_point_id=session.charge_point.charge_point_id,
                connector_number=session.connector_number,
                message=f"Session {session.transaction_id} open with no activity since {last_activity:%Y-%m-%d %H:%M}",
            )
            touched.append(session.pk)
    return touched


# --- meter values -------------------------------------------------------------------


def meter_values_store(charge_point_pk: int, rows: list[dict]) -> int:
    """Insert sampled values; identical ones already stored (a re-send) are skipped. How many were new."""
    return meter_values_store_many([(charge_point_pk, rows)])


METER_VALUE_COLUMNS = ("charge_point_id", "connector_number", "session_id", "transaction_id", "measurand", "phase",
                       "unit", "context", "location", "value", "normalized", "sampled_at", "received_at")


def meter_values_store_many(rows_by_charger: list[tuple[int, list[dict]]]) -> int:
    """``meter_values_store`` for several chargers in one COPY (the group commit writes every batch with it)."""
    rows = [
        (charge_point_pk, row["connector_number"], row.get("session_id"), row.get("transaction_id"),
         row["measurand"], row["phase"], row["unit"], row["context"], row["location"], row["value"],
         row["normalized"], row["sampled_at"], row["received_at"])
        for charge_point_pk, rows in rows_by_charger
        for row in rows
    ]
    if not rows:
        return 0
    return copy_new_rows(MeterValue, METER_VALUE_COLUMNS, rows)


# --- what the car needs (the load balancer shares by it) -----------------------------------------------

MAX_WANTED_WH = 200_000  # more than any car's battery: a typing error, not a wish
MAX_READY_IN = timedelta(days=7)


class NeedsRefused(ValueError):
    """The energy or time asked for is out of range."""


class SessionEnded(NeedsRefused):
    """The session has ended: nothing more to share."""


def session_needs_set(
    *, session_pk: int, wanted_energy_wh: int | None, ready_by: datetime | None, now: datetime,
) -> ChargingSession:
    """Record what the resident wants from an open session: the energy in total (Wh) and when; None clears
    either (the balancer then estimates it). The building is rebalanced once this commits."""
    if wanted_energy_wh is not None and not 0 < wanted_energy_wh <= MAX_WANTED_WH:
        raise NeedsRefused(f"energy_wh must be above 0 and at most {MAX_WANTED_WH}")
    if ready_by is not None and not now < ready_by <= now + MAX_READY_IN:
        raise NeedsRefused("ready_by must be in the future, within 7 days")
    with transaction.atomic():
        session = ChargingSession.objects.select_for_update(no_key=True).select_related("charge_point").get(
            pk=session_pk)
        if session.stopped_at is not None:
            raise SessionEnded("the session has ended")
        session.wanted_energy_wh = wanted_energy_wh
        session.ready_by = ready_by
        session.save(update_fields=["wanted_energy_wh", "ready_by", "updated_at"])
        events.load_changed(f"{session.charge_point.charge_point_id}#{session.connector_number} needs")
    return session
