"""What one balancing cycle reads: the building's tree, connectors, open sessions and site meter, as the
allocator's dataclasses. Call inside the building's schema. A fixed number of queries (at most six) plus
two Redis round trips (the chargers' live state and the latest meter reading), however big the building.

What each car needs: what its resident asked for (ChargingSession.wanted_energy_wh and ready_by); when they
said nothing, the median energy of the idTag's last 10 completed sessions (no estimate without history) and
the building's usual ready-by (LOADBALANCING_DEFAULT_READY_BY, local time) after the session started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection

from apps.charging.models import Connector
from apps.charging.selectors import OpenSession, open_sessions, usual_energy_wh
from apps.electrical.latest import site_load_latest
from apps.electrical.models import Circuit, SiteMeter
from apps.loadbalancing import allocator
from apps.ocpp import charging_profiles, live
from apps.tenancy.models import Condominium

log = logging.getLogger(__name__)

NO_MAX_A = Decimal(32)  # a gun commissioned without a maximum: the most a common AC gun carries


@dataclass(frozen=True)
class BuildingInputs:
    nodes: tuple[allocator.Node, ...]
    connectors: tuple[allocator.Connector, ...]
    sessions: tuple[allocator.Session, ...]
    meters: tuple[allocator.MeterReading, ...]
    connector_pks: dict[str, int]  # allocator key -> Connector pk
    session_pks: dict[str, int]  # allocator session id -> ChargingSession pk
    safe_ev_budget_a: Decimal  # per phase, for the EVs when the site meter is silent
    meter_age_s: float | None  # None: no reading at all


def connector_key(charge_point_id: str, number: int) -> str:
    return f"{charge_point_id}#{number}"


def _safe_default_a(row: dict, connectors_on_circuit: int, accepts_zero: bool) -> Decimal:
    """What the dispatch gives the connector as its TxDefaultProfile (a session that starts before its first
    limit may draw it): the allocator keeps it free for every idle connector. 0 A on a charger that accepts
    0 A: nothing to keep free (its new sessions wait for their first limit, which their start asks for)."""
    circuit_phases = row["charge_point__circuit__phases"]
    circuit_a = (row["charge_point__circuit__max_current_l1_a"], row["charge_point__circuit__max_current_l2_a"],
                 row["charge_point__circuit__max_current_l3_a"])
    cap = charging_profiles.cabinet_cap_a(
        max_current_a=min(circuit_a[: max(circuit_phases, 1)]) * row["charge_point__circuit__derate"],
        max_power_w=row["charge_point__circuit__max_power_w"], voltage_v=row["charge_point__circuit__voltage_v"],
        phases=circuit_phases)
    return charging_profiles.safe_default_a(circuit_cap_a=cap, connectors_on_circuit=connectors_on_circuit,
                                            min_current_a=row["min_current_a"], max_current_a=row["max_current_a"],
                                            accepts_zero=accepts_zero)


def usual_ready_by(*, started_at: datetime | None, now: datetime, zone: ZoneInfo, at: time) -> datetime:
    """The first ``at`` (local time) after the session started; if that is past already, the next one after now
    (the car stayed: the next morning)."""

    def first_after(moment: datetime) -> datetime:
        local = moment.astimezone(zone)
        candidate = datetime.combine(local.date(), at, tzinfo=zone)
        return candidate if candidate > local else datetime.combine(local.date() + timedelta(days=1), at, tzinfo=zone)

    ready = first_after(started_at or now)
    return ready if ready > now else first_after(now)


# The columns a run reads, as values() rows: model instances of the connectors with their chargers and
# circuits cost more to build than the whole allocation (docs/benchmarks.md, "Balancing 100 buildings").
CIRCUIT_FIELDS = ("id", "key", "parent_id", "parent__key", "max_current_l1_a", "max_current_l2_a",
                  "max_current_l3_a", "max_power_w", "derate", "margin_a", "voltage_v", "safe_ev_budget_a")
CONNECTOR_FIELDS = (
    "id", "connector_id", "phases", "phase_rotation", "min_current_a", "max_current_a", "is_dc", "max_power_w",
    "min_power_w", "efficiency", "limit__flagged_at", "charge_point__charge_point_id",
    "charge_point__circuit_id", "charge_point__enabled", "charge_point__smart_charging_quirks",
    "charge_point__circuit__key", "charge_point__circuit__phases", "charge_point__circuit__max_current_l1_a",
    "charge_point__circuit__max_current_l2_a", "charge_point__circuit__max_current_l3_a",
    "charge_point__circuit__derate", "charge_point__circuit__max_power_w", "charge_point__circuit__voltage_v",
)


def building_inputs(*, now: datetime) -> BuildingInputs:
    circuits = list(Circuit.objects.filter(removed_at__isnull=True).values(*CIRCUIT_FIELDS))
    nodes = tuple(
        allocator.Node(
            key=circuit["key"],
            limits_a=(circuit["max_current_l1_a"], circuit["max_current_l2_a"], circuit["max_current_l3_a"]),
            parent=circuit["parent__key"], max_power_w=circuit["max_power_w"], derate=circuit["derate"],
            margin_a=circuit["margin_a"], voltage_v=circuit["voltage_v"],
        )
        for circuit in circuits
    )
    supply = next((circuit for circuit in circuits if circuit["parent_id"] is None), None)
    # The connector's limit row comes along (a left join): one flagged for not following its limits is
    # unmanaged.
    rows = list(
        Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True)
        .values(*CONNECTOR_FIELDS)
    )
    states = live.read_building_live({row["charge_point__charge_point_id"] for row in rows})
    on_circuit: dict[int, int] = {}
    for row in rows:
        circuit_id = row["charge_point__circuit_id"]
        on_circuit[circuit_id] = on_circuit.get(circuit_id, 0) + 1
    schema = connection.schema_name
    connectors = []
    connector_pks: dict[str, int] = {}
    for row in rows:
        cp_id = row["charge_point__charge_point_id"]
        state = states.get(cp_id)
        quirks = row["charge_point__smart_charging_quirks"] or {}
        key = connector_key(cp_id, row["connector_id"])
        connector_pks[key] = row["id"]
        online = bool(state and state.connected and state.schema == schema and row["charge_point__enabled"])
        accepts_zero = not quirks.get("zero_rejected")
        connectors.append(allocator.Connector(
            key=key, node=row["charge_point__circuit__key"], phases=row["phases"], rotation=row["phase_rotation"],
            min_current_a=row["min_current_a"], max_current_a=row["max_current_a"] or NO_MAX_A, dc=row["is_dc"],
            max_power_w=row["max_power_w"], min_power_w=row["min_power_w"], efficiency=row["efficiency"],
            step_a=Decimal(1) if quirks.get("integer_amps") else Decimal("0.1"),
            accepts_zero=accepts_zero, online=online,
            compliant=not quirks.get("no_smart_charging") and row["limit__flagged_at"] is None,
            default_limit_a=_safe_default_a(row, on_circuit[row["charge_point__circuit_id"]], accepts_zero),
        ))
    pk_to_key = {pk: key for key, pk in connector_pks.items()}
    sessions = []
    session_pks: dict[str, int] = {}
    # One session per connector: should the charging records ever hold two open ones on a connector (a stop
    # that never came, not closed yet), the newest is the car that is there; the run goes on with it.
    newest: dict[int, OpenSession] = {}
    for session in open_sessions():
        if session.connector_pk and (session.connector_pk not in newest
                                     or session.session_pk > newest[session.connector_pk].session_pk):
            if session.connector_pk in newest:
                log.warning("connector %s has two open sessions (%s, %s); balancing with the newest",
                            session.connector_pk, newest[session.connector_pk].session_pk, session.session_pk)
            newest[session.connector_pk] = session
    opened = list(newest.values())
    usual = usual_energy_wh(id_tags=[s.id_tag for s in opened if s.wanted_energy_wh is None])
    zone = None
    if any(s.ready_by is None for s in opened):
        zone = ZoneInfo(Condominium.objects.only("timezone").get(schema_name=schema).timezone)
    for session in opened:
        key = pk_to_key.get(session.connector_pk)
        if key is None:
            continue  # a session on a connector that was never commissioned: its draw stays in the non-EV load
        state = states.get(session.charge_point_id)
        reading = state.connector(session.connector_number) if state else None
        draw = None
        if reading is not None and reading.current_at is not None and any(
            value is not None for value in reading.currents_a
        ):
            draw = tuple(value or Decimal(0) for value in reading.currents_a)
        demand_wh = session.wanted_energy_wh
        if demand_wh is None:
            demand_wh = usual.get(session.id_tag.upper())
        departure = session.ready_by
        if departure is None and zone is not None:
            departure = usual_ready_by(started_at=session.started_at, now=now, zone=zone,
                                       at=settings.LOADBALANCING_DEFAULT_READY_BY)
        sessions.append(allocator.Session(
            id=str(session.session_pk), connector=key,
            arrived_at=session.started_at or now, draw_a=draw,  # type: ignore[arg-type]
            draw_at=reading.current_at if draw is not None and reading is not None else None,
            energy_wh=session.energy_wh or 0, demand_wh=demand_wh,
            departure=departure if demand_wh is not None else None,
        ))
        session_pks[str(session.session_pk)] = session.session_pk
    meters = []
    latest = site_load_latest(schema)
    meter = (SiteMeter.objects.filter(removed_at__isnull=True)
             .values("key", "circuit__key", "stale_after_s").first())
    if meter is not None:
        currents = None
        if latest is not None and latest.meter_key == meter["key"]:
            values = list(latest.reading.currents_a) + [Decimal(0)] * (3 - len(latest.reading.currents_a))
            currents = (values[0], values[1], values[2])
        meters.append(allocator.MeterReading(
            node=meter["circuit__key"], currents_a=currents, at=latest.reading.sampled_at if currents else None,
            stale_after_s=meter["stale_after_s"],
        ))
    return BuildingInputs(
        nodes=nodes, connectors=tuple(connectors), sessions=tuple(sessions), meters=tuple(meters),
        connector_pks=connector_pks, session_pks=session_pks,
        safe_ev_budget_a=supply["safe_ev_budget_a"] if supply is not None else Decimal(0),
        meter_age_s=latest.age_s(now) if latest is not None else None,
    )
