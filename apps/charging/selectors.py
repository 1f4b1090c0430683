"""Reads of chargers, sessions and meter values. Call inside the condominium's schema.

What the OCPP connection needs (its charger's context, the session a message belongs to, a card's
status) and what the features built on charging read: the load balancer (``open_sessions``: who
charges where, since when, how much so far) and billing (``sessions_in_period`` and the meter values
of sessions), and the capacity report (``ev_draw_in_period``). Each of these is a fixed number of
queries, however many rows it returns.
Writes are apps.charging.services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connection
from django.db.models import CharField, F, OuterRef, QuerySet, Subquery, Window
from django.db.models.functions import Cast, JSONObject, RowNumber, Upper
from django.utils import timezone

from apps.buildings.models import IdTag, Resident
from apps.charging import metering
from apps.charging.models import ChargePoint, ChargingSession, Connector, MeterValue, OneTimeTag
from apps.core.compiled import CompiledValues, json_value
from apps.electrical import capacity
from apps.electrical.selectors import ocpp_site_meter_from, ocpp_site_meter_of

ACCEPTED = "Accepted"
BLOCKED = "Blocked"
EXPIRED = "Expired"
INVALID = "Invalid"
CONCURRENT_TX = "ConcurrentTx"


# --- chargers -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorInfo:
    pk: int
    max_power_w: int


@dataclass(frozen=True)
class ChargerContext:
    """What the OCPP connection keeps in memory about its charger."""

    pk: int
    charge_point_id: str
    enabled: bool
    removed: bool
    connectors: dict[int, ConnectorInfo]
    # connector number -> (transaction id, session pk, meterStart)
    open_sessions: dict[int, tuple[int, int, int | None]]
    statuses: dict[int, tuple[str, str]]  # connector number -> (status, error code); 0 is the charger
    configuration: dict  # as last read with GetConfiguration (apps.ocpp.measurands)
    configuration_read_at: datetime | None
    site_meter: tuple[str, int] | None = None  # (meter key, connector) when it is the building's OCPP site meter
    online: bool = False  # as recorded when the context was read


def _charger_context_query(match: str) -> CompiledValues:
    """The charger (``charge_point_id`` compared with ``match``: exact or iexact) with its connectors, its open
    sessions and its site-meter role as subqueries: one query."""

    def build(charge_point_id: str) -> QuerySet:
        return ChargePoint.objects.filter(**{f"charge_point_id__{match}": charge_point_id}).annotate(
            connector_rows=ArraySubquery(
                Connector.objects.filter(charge_point=OuterRef("pk"), removed_at__isnull=True)
                .order_by("connector_id")
                .values(json=JSONObject(pk="pk", number="connector_id", phases="phases", status="status",
                                        error_code="error_code", max_current_a=Cast("max_current_a", CharField())))),
            session_rows=ArraySubquery(
                ChargingSession.objects.filter(charge_point=OuterRef("pk"), stopped_at__isnull=True,
                                               transaction_id__isnull=False).order_by("started_at", "pk")
                .values(json=JSONObject(pk="pk", connector="connector_number", transaction_id="transaction_id",
                                        meter_start_wh="meter_start_wh"))),
            site_meter=ocpp_site_meter_of(OuterRef("charge_point_id")),
        ).order_by("pk").values(
            "pk", "charge_point_id", "enabled", "removed_at", "is_online", "status", "error_code", "configuration",
            "configuration_read_at", "connector_rows", "session_rows", "site_meter")[:1]

    return CompiledValues(build)


_CONTEXT_BY_ID = _charger_context_query("exact")
_CONTEXT_BY_ID_IGNORING_CASE = _charger_context_query("iexact")


def charger_context(charge_point_id: str) -> ChargerContext | None:
    """What a new connection of the charger keeps (None when the building has no such charger), in one query
    compiled once per process (a reconnect storm runs this for every charger, on threads every connection of
    the process shares: compiling it again each time cost more than running it)."""
    # The id as registered first (the unique index); a case-insensitive match, which reads every charger of
    # the building, only when that finds none.
    cp = _CONTEXT_BY_ID.first(charge_point_id) or _CONTEXT_BY_ID_IGNORING_CASE.first(charge_point_id)
    if cp is None:
        return None
    connector_rows = [json_value(row) for row in cp["connector_rows"]]
    connectors = {
        row["number"]: ConnectorInfo(row["pk"], metering.connector_max_power_w(
            Decimal(row["max_current_a"]) if row["max_current_a"] is not None else None, row["phases"]))
        for row in connector_rows
    }
    statuses = {row["number"]: (row["status"], row["error_code"]) for row in connector_rows if row["status"]}
    if cp["status"]:
        statuses[0] = (cp["status"], cp["error_code"])
    # Oldest first: a later session on the same connector (a stop never received) is the one kept.
    open_sessions = {row["connector"]: (row["transaction_id"], row["pk"], row["meter_start_wh"])
                     for row in map(json_value, cp["session_rows"])}
    return ChargerContext(
        cp["pk"], cp["charge_point_id"], cp["enabled"], cp["removed_at"] is not None, connectors, open_sessions,
        statuses, dict(json_value(cp["configuration"]) or {}), cp["configuration_read_at"],
        ocpp_site_meter_from(json_value(cp["site_meter"])), cp["is_online"],
    )


# --- authorization ------------------------------------------------------------------


@dataclass(frozen=True)
class IdTagDecision:
    status: str
    parent_id_tag: str = ""
    expiry_date: datetime | None = None
    resident_id: int | None = None
    one_time_tag_pk: int | None = None  # a one-time tag (apps/charging/one_time_tags.py) that this start uses up


def id_tag_status(tag: IdTag, now: datetime | None = None) -> str:
    """Accepted, Blocked or Expired for a tag (with its resident loaded), before any ConcurrentTx check.

    Blocked: a card blocked or reported lost, a resident who moved out, or an account that is not in good
    standing (overdue, suspended).
    """
    resident = tag.resident
    if tag.status != IdTag.Status.ACTIVE or not resident.is_active or resident.charging_blocked:
        return BLOCKED
    if tag.expires_at is not None and tag.expires_at <= (now or timezone.now()):
        return EXPIRED
    return ACCEPTED


def authorize_id_tag(
    id_tag: str, *, charge_point_pk: int | None = None, connector_number: int | None = None,
    lock_resident: bool = False,
) -> IdTagDecision:
    """Accepted, Invalid, Blocked, Expired or ConcurrentTx for an idTag.

    ConcurrentTx: the resident already charges elsewhere and may not hold two
    sessions. A session on the same charger does not count (the tag is likely
    being presented to stop it).

    ``lock_resident`` (inside the caller's transaction, which then stores the session): the resident's
    row is locked before their open sessions are counted, so that two StartTransactions of one card at
    two chargers take turns and the second sees the first's session. NO KEY UPDATE: rows that merely
    point at the resident (sessions, reservations) can still be inserted meanwhile.
    """
    tag = IdTag.objects.select_related("resident").filter(id_tag=id_tag.strip().upper()).first()
    if tag is None:
        return _one_time_tag_decision(id_tag.strip().upper(), charge_point_pk=charge_point_pk,
                                      connector_number=connector_number, lock=lock_resident)
    parent = tag.parent_id_tag or ""
    base = {"parent_id_tag": parent, "expiry_date": tag.expires_at, "resident_id": tag.resident_id}
    status = id_tag_status(tag)
    if status != ACCEPTED:
        return IdTagDecision(status, **base)
    if not tag.resident.allow_concurrent_sessions:
        if lock_resident:
            # order_by(): the default ordering would join (and lock) the unit and the user too.
            list(Resident.objects.select_for_update(no_key=True).filter(pk=tag.resident_id).order_by()
                 .values_list("pk", flat=True))
        others = ChargingSession.objects.filter(resident_id=tag.resident_id, stopped_at__isnull=True)
        if charge_point_pk is not None:
            others = others.exclude(charge_point_id=charge_point_pk)
        if others.exists():
            return IdTagDecision(CONCURRENT_TX, **base)
    return IdTagDecision(ACCEPTED, **base)


def _one_time_tag_decision(id_tag: str, *, charge_point_pk: int | None, connector_number: int | None,
                           lock: bool) -> IdTagDecision:
    """A one-time tag: Accepted at its own charger and connector, before it expires, until a start used it.

    ``lock`` (StartTransaction, inside its transaction): the tag's row is locked, so that of two starts
    with one tag the second sees it used.
    """
    rows = OneTimeTag.objects.select_for_update() if lock else OneTimeTag.objects
    one = rows.filter(id_tag=id_tag).first()
    if one is None:
        return IdTagDecision(INVALID)
    if charge_point_pk is not None and one.charge_point_id != charge_point_pk:
        return IdTagDecision(INVALID)
    if connector_number is not None and connector_number != one.connector_number:
        return IdTagDecision(INVALID)
    if one.used_at is not None or one.revoked_at is not None:
        return IdTagDecision(INVALID)
    if one.expires_at <= timezone.now():
        return IdTagDecision(EXPIRED, expiry_date=one.expires_at)
    return IdTagDecision(ACCEPTED, expiry_date=one.expires_at, one_time_tag_pk=one.pk)


# --- the session a message belongs to ---------------------------------------------


def session_find_for_message(
    *, charge_point_pk: int, transaction_id: int | None, connector_number: int | None = None, id_tag: str = "",
) -> tuple[ChargingSession | None, str]:
    """The session a StopTransaction or MeterValues belongs to, and how it was found."""
    if transaction_id is not None and transaction_id > 0:
        session = ChargingSession.objects.filter(charge_point_id=charge_point_pk, transaction_id=transaction_id).first()
        if session is not None:
            return session, "exact"
    candidates = ChargingSession.objects.filter(charge_point_id=charge_point_pk, stopped_at__isnull=True)
    if connector_number:
        candidates = candidates.filter(connector_number=connector_number)
    if id_tag:
        candidates = candidates.filter(id_tag=id_tag.strip().upper())
    found = list(candidates[:2])
    if len(found) == 1:
        return found[0], "open-session"
    return None, "orphan"


def meter_values_session_for(*, charge_point_pk: int, connector_number: int, transaction_id: int | None) -> int | None:
    """The session MeterValues belong to (by transactionId, else the connector's open session)."""
    session, how = session_find_for_message(
        charge_point_pk=charge_point_pk, transaction_id=transaction_id, connector_number=connector_number or None,
    )
    if session is None or (how != "exact" and not connector_number):
        return None
    return session.pk


def open_session_energy_wh(meter_start_wh: int | None, register_wh: Decimal | None) -> int | None:
    if meter_start_wh is None or register_wh is None or meter_start_wh < 0:
        return None
    delta = int(register_wh) - meter_start_wh
    return delta if delta >= 0 else None


# --- for the load balancer -----------------------------------------------------------


@dataclass(frozen=True)
class OpenSession:
    """A session under way, as the load balancer sees it."""

    session_pk: int
    transaction_id: int | None
    charge_point_pk: int
    charge_point_id: str
    connector_pk: int | None  # None: a connector that is not commissioned
    connector_number: int
    resident_id: int | None
    id_tag: str
    started_at: datetime | None
    meter_start_wh: int | None
    # Energy so far from the latest energy register reading stored (None before the first one, or when
    # meterStart is a placeholder); the live state in Redis (apps.ocpp.live) has it sooner.
    energy_wh: int | None
    energy_read_at: datetime | None
    wanted_energy_wh: int | None = None  # what the resident asked for (None: said nothing)
    ready_by: datetime | None = None


def _latest_register(field: str) -> Subquery:
    return Subquery(
        MeterValue.objects.filter(
            session=OuterRef("pk"), measurand=metering.REGISTER_MEASURAND, phase="", location__in=("", "Outlet"),
        ).order_by("-sampled_at", "-id").values(field)[:1]
    )


def open_sessions(*, charge_point_pks: Iterable[int] | None = None) -> list[OpenSession]:
    """Every open session of the building (or of the chargers named), oldest first. One query."""
    sessions = ChargingSession.objects.filter(stopped_at__isnull=True)
    if charge_point_pks is not None:
        sessions = sessions.filter(charge_point_id__in=list(charge_point_pks))
    rows = (
        sessions.annotate(register_value=_latest_register("value"), register_unit=_latest_register("unit"),
                          register_at=_latest_register("sampled_at"))
        .order_by("started_at", "pk")
        .values_list("pk", "transaction_id", "charge_point_id", "charge_point__charge_point_id", "connector_id",
                     "connector_number", "resident_id", "id_tag", "started_at", "meter_start_wh",
                     "register_value", "register_unit", "register_at", "wanted_energy_wh", "ready_by")
    )
    result = []
    for (pk, transaction_id, cp_pk, cp_id, connector_pk, number, resident_id, id_tag, started_at, meter_start,
         register_value, register_unit, register_at, wanted_energy_wh, ready_by) in rows:
        register_wh = metering.to_wh(register_value, register_unit) if register_value is not None else None
        result.append(OpenSession(
            session_pk=pk, transaction_id=transaction_id, charge_point_pk=cp_pk, charge_point_id=cp_id,
            connector_pk=connector_pk, connector_number=number, resident_id=resident_id, id_tag=id_tag,
            started_at=started_at, meter_start_wh=meter_start,
            energy_wh=open_session_energy_wh(meter_start, register_wh), energy_read_at=register_at,
            wanted_energy_wh=wanted_energy_wh, ready_by=ready_by,
        ))
    return result


HISTORY_SESSIONS = 10


def usual_energy_wh(*, id_tags: Iterable[str]) -> dict[str, int]:
    """The median energy of each idTag's last 10 completed sessions (upper-case idTag -> Wh). One query.

    Sessions with no energy or held for review are left out (a plug-in that never charged, a doubtful meter);
    an idTag without any such session is absent.
    """
    tags = sorted({tag.upper() for tag in id_tags if tag})
    if not tags:
        return {}
    rows = (
        ChargingSession.objects.annotate(tag=Upper("id_tag"))
        .filter(tag__in=tags, stopped_at__isnull=False, energy_wh__gt=0, needs_review=False)
        .annotate(recent=Window(RowNumber(), partition_by=[F("tag")], order_by=[F("stopped_at").desc(),
                                                                                  F("pk").desc()]))
        .filter(recent__lte=HISTORY_SESSIONS)
        .values_list("tag", "energy_wh")
    )
    energies: dict[str, list[int]] = {}
    for tag, energy_wh in rows:
        energies.setdefault(tag, []).append(energy_wh)
    return {tag: _median(values) for tag, values in energies.items()}


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2


# --- for billing ---------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRecord:
    """A finished session, as billing reads it: who, where, when and how much (integer Wh)."""

    session_pk: int
    transaction_id: int | None
    charge_point_id: str
    connector_number: int
    resident_id: int | None
    unit_id: int | None  # the resident's unit
    id_tag: str
    authorization_status: str
    started_at: datetime | None
    stopped_at: datetime
    energy_wh: int
    energy_source: str
    needs_review: bool
    review_reason: str


def sessions_in_period(*, start: datetime, end: datetime) -> list[SessionRecord]:
    """Sessions that ended in [start, end), in the order they ended. One query.

    A session belongs to the period it ends in: its energy is only known (and final) once it stopped.
    Sessions flagged ``needs_review`` are included with their reasons; billing decides what to do.
    """
    rows = (
        ChargingSession.objects.filter(stopped_at__gte=start, stopped_at__lt=end)
        .order_by("stopped_at", "pk")
        .values_list("pk", "transaction_id", "charge_point__charge_point_id", "connector_number", "resident_id",
                     "resident__unit_id", "id_tag", "authorization_status", "started_at", "stopped_at",
                     "energy_wh", "energy_source", "needs_review", "review_reason")
    )
    return [SessionRecord(*row) for row in rows]


@dataclass(frozen=True)
class MeterReading:
    """One stored sampled value."""

    sampled_at: datetime
    measurand: str
    phase: str
    location: str
    context: str
    value: Decimal
    unit: str
    normalized: int | None  # integer in the base unit (Wh, W, mA...), see apps.charging.metering.normalize


def session_meter_values(
    *, session_pks: Iterable[int], measurands: Iterable[str] | None = None,
) -> dict[int, list[MeterReading]]:
    """The meter values of each session named (every one present as a key), in sampled order. One query."""
    pks = list(session_pks)
    values = MeterValue.objects.filter(session_id__in=pks)
    if measurands is not None:
        values = values.filter(measurand__in=list(measurands))
    result: dict[int, list[MeterReading]] = {pk: [] for pk in pks}
    for session_pk, *reading in values.order_by("session_id", "sampled_at", "id").values_list(
        "session_id", "sampled_at", "measurand", "phase", "location", "context", "value", "unit", "normalized",
    ):
        result[session_pk].append(MeterReading(*reading))
    return result


# --- for the capacity report ---------------------------------------------------------------

# The grid phase (0 = L1) of each of a connector's phases, by its rotation.
_GRID = {"L1": (0,), "L2": (1,), "L3": (2,), "R": (0,), "S": (1,), "T": (2,)}


def grid_phases(phases: int, rotation: str) -> tuple[int, ...]:
    """(0,) for a single-phase gun on L1, (1, 2, 0) for a three-phase gun wired STR..."""
    if phases >= 3 and len(rotation) == 3:
        return tuple(_GRID[letter][0] for letter in rotation)
    if phases >= 3:
        return (0, 1, 2)
    return _GRID.get(rotation, (0,))


def ev_draw_in_period(*, start: datetime, end: datetime) -> list[capacity.SessionDraw]:
    """What every session that charged in [start, end) tells about its draw, per quarter hour. Three queries.

    The energy register thinned to its last reading in each quarter (plus meterStart and meterStop), and
    the mean ``Current.Import`` per quarter and phase: enough for ``capacity.ev_draw_per_quarter``, however
    often the chargers sample.
    """
    sessions = {
        pk: (phases, rotation, max_a, started_at, meter_start, stopped_at, meter_stop)
        for pk, phases, rotation, max_a, started_at, meter_start, stopped_at, meter_stop in
        ChargingSession.objects.filter(started_at__lt=end).exclude(stopped_at__lt=start)
        .values_list("pk", "connector__phases", "connector__phase_rotation", "connector__max_current_a",
                     "started_at", "meter_start_wh", "stopped_at", "meter_stop_wh")
    }
    if not sessions:
        return []
    table = MeterValue._meta.db_table
    quarter = "to_timestamp(FLOOR(EXTRACT(EPOCH FROM sampled_at) / 900) * 900)"
    registers: dict[int, list[tuple[datetime, Decimal]]] = {pk: [] for pk in sessions}
    currents: dict[int, dict[tuple[datetime, int], Decimal]] = {pk: {} for pk in sessions}
    window = [start - timedelta(minutes=15), end, list(sessions)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT ON (session_id, {quarter}) session_id, sampled_at, "  # noqa: S608
            "CASE WHEN unit = 'kWh' THEN value * 1000 ELSE value END "
            f"FROM {table} WHERE measurand = %s AND phase = '' AND location IN ('', 'Outlet') "
            "AND unit IN ('', 'Wh', 'kWh') AND sampled_at >= %s AND sampled_at < %s AND session_id = ANY(%s) "
            f"ORDER BY session_id, {quarter}, sampled_at DESC",
            [metering.REGISTER_MEASURAND, *window],
        )
        for session_pk, at, wh in cursor.fetchall():
            registers[session_pk].append((at, Decimal(wh)))
        cursor.execute(
            f"SELECT session_id, {quarter} AS q, phase, AVG(normalized) "  # noqa: S608
            f"FROM {table} WHERE measurand = 'Current.Import' AND unit IN ('', 'A') AND normalized IS NOT NULL "
            "AND location IN ('', 'Outlet') AND sampled_at >= %s AND sampled_at < %s AND session_id = ANY(%s) "
            "GROUP BY session_id, q, phase",
            window,
        )
        for session_pk, at, phase, milliamperes in cursor.fetchall():
            conductor = {"": 0, "L1": 0, "L2": 1, "L3": 2}.get(phase.split("-")[0])
            if conductor is not None:
                currents[session_pk][(at, conductor)] = Decimal(milliamperes) / 1000
    draws = []
    for pk, (phases, rotation, max_a, started_at, meter_start, stopped_at, meter_stop) in sessions.items():
        points = list(registers[pk])
        if meter_start is not None and meter_start >= 0 and started_at is not None:
            points.append((started_at, Decimal(meter_start)))
        if meter_stop is not None and meter_stop > 0 and stopped_at is not None:
            points.append((stopped_at, Decimal(meter_stop)))
        draws.append(capacity.SessionDraw(
            grid_phases=grid_phases(phases or 1, rotation or "L1"),
            registers=sorted(points), currents=currents[pk],
            # With some slack: a charger's meter and its clock are not exact.
            max_power_w=metering.connector_max_power_w(max_a, phases or 1) * 5 // 4,
        ))
    return draws
