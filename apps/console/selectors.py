"""What the building console reads, in the building's schema: the tree, the connectors and the sessions under way
from the database (a fixed number of queries, however many chargers), the chargers' live state from Redis (one
pipelined round trip, no query), the latest balancing run. apps/console/board.py makes the picture of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.db.models import Max
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import TruncMinute

from apps.charging.models import ChargingSession, Connector
from apps.console import board, history
from apps.electrical.capacity import PhaseLimits
from apps.electrical.models import Circuit, SiteMeter, SiteMeterReading
from apps.loadbalancing.models import BalancingRun
from apps.ocpp import live


@dataclass(frozen=True)
class Structure:
    """The parts of the picture that change only with the building's set-up (and the sessions, read with it)."""

    circuits: tuple[board.CircuitInfo, ...]
    connectors: tuple[board.ConnectorInfo, ...]
    sessions: dict[str, board.SessionInfo]

    @property
    def charge_point_ids(self) -> list[str]:
        return sorted({c.charge_point_id for c in self.connectors})


def structure() -> Structure:
    """Three queries (circuits, connectors with their chargers and spots, open sessions with their residents), read
    as plain rows: no model instances, which for a building of 200 connectors cost more than the queries."""
    circuits = tuple(
        board.CircuitInfo(key=c["key"], name=c["name"], parent=c["parent__key"], max_power_w=c["max_power_w"],
                          limit_a=usable_per_phase(c))
        for c in Circuit.objects.filter(removed_at__isnull=True).values(
            "key", "name", "parent__key", "max_power_w", "max_current_l1_a", "max_current_l2_a", "max_current_l3_a",
            "derate", "margin_a")
    )
    rows = (Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True)
            .order_by("charge_point__charge_point_id", "connector_id")
            .values("connector_id", "phase_rotation", "is_dc", "charge_point__charge_point_id",
                    "charge_point__circuit__key", "parking_spot__label"))
    connectors = tuple(
        board.ConnectorInfo(key=f"{c['charge_point__charge_point_id']}#{c['connector_id']}",
                            charge_point_id=c["charge_point__charge_point_id"], number=c["connector_id"],
                            circuit=c["charge_point__circuit__key"] or "", rotation=c["phase_rotation"],
                            spot=c["parking_spot__label"] or "", dc=c["is_dc"])
        for c in rows
    )
    return Structure(circuits=circuits, connectors=connectors, sessions=open_sessions())


def open_sessions() -> dict[str, board.SessionInfo]:
    """The sessions under way, by connector key, with their resident (one query)."""
    rows = (ChargingSession.objects.filter(stopped_at__isnull=True, connector__isnull=False)
            .order_by("started_at", "pk")
            .values("transaction_id", "started_at", "charge_point__charge_point_id", "connector__connector_id",
                    "resident__user__name", "resident__user__email", "resident__unit__number"))
    return {
        f"{s['charge_point__charge_point_id']}#{s['connector__connector_id']}": board.SessionInfo(
            transaction_id=s["transaction_id"],
            resident=s["resident__user__name"] or s["resident__user__email"] or "",
            unit=s["resident__unit__number"] or "", started_at=s["started_at"])
        for s in rows
    }


def usable_per_phase(circuit: dict) -> tuple[Decimal, Decimal, Decimal]:
    """What the node may carry per phase as the balancer counts it (apps.electrical.capacity.PhaseLimits)."""
    l1, l2, l3 = PhaseLimits(rated_a=(circuit["max_current_l1_a"], circuit["max_current_l2_a"],
                                      circuit["max_current_l3_a"]),
                             derate=circuit["derate"], margin_a=circuit["margin_a"]).usable_a
    return l1, l2, l3


def latest_run_id() -> int | None:
    """The latest balancing run's id (one small query), to know whether the picture's run is still the latest."""
    return BalancingRun.objects.order_by("-started_at", "-id").values_list("id", flat=True).first()


def run_info(run_id: int | None = None, zone: tzinfo | None = None) -> board.RunInfo | None:
    """The latest run (or the one named), with what the picture needs of it; its time in ``zone`` when given."""
    runs = BalancingRun.objects.order_by("-started_at", "-id").only("id", "started_at", "limits", "nodes")
    run = runs.filter(pk=run_id).first() if run_id is not None else runs.first()
    if run is None:
        return None
    started = run.started_at.astimezone(zone) if zone is not None else run.started_at
    return board.RunInfo(run_id=run.pk, started_at=started, limits=run.limits, nodes=run.nodes)


def connectors_now(states: dict[str, live.ChargerLive], schema_name: str,
                   connectors: tuple[board.ConnectorInfo, ...]) -> dict[str, board.ConnectorNow]:
    """Each connector's live state. A charger counts as online only when its connection is this building's."""
    found = {}
    for connector in connectors:
        charger = states.get(connector.charge_point_id)
        if charger is None:
            continue
        state = charger.connector(connector.number)
        found[connector.key] = board.ConnectorNow(
            online=charger.connected and charger.schema == schema_name,
            status=state.status, error_code=state.error_code, currents_a=state.currents_a, power_w=state.power_w,
            session_energy_wh=state.session_energy_wh, transaction_id=state.transaction_id)
    return found


def console_picture(schema_name: str) -> tuple[Structure, board.RunInfo | None, board.Picture]:
    """Everything for the console page, read now."""
    built = structure()
    run = run_info()
    states = live.read_building_live(built.charge_point_ids)
    return built, run, board.picture(built.circuits, built.connectors,
                                     connectors_now(states, schema_name, built.connectors), built.sessions, run)


@dataclass(frozen=True)
class FinishedSession:
    pk: int
    connector: str
    resident: str
    unit: str
    started_at: object
    stopped_at: object
    stop_reason: str
    energy_wh: int
    total: Decimal | None
    currency: str
    held: bool


def finished_sessions(limit: int = 20) -> list[FinishedSession]:
    """The building's latest finished sessions, with who charged and what it cost (one query)."""
    rows = (ChargingSession.objects.filter(stopped_at__isnull=False).order_by("-stopped_at", "-pk")
            .values("pk", "charge_point__charge_point_id", "connector_number", "resident__user__name",
                    "resident__user__email", "resident__unit__number", "id_tag", "started_at", "stopped_at",
                    "stop_reason", "energy_wh", "charge__status", "charge__total", "charge__currency")[:limit])
    return [FinishedSession(
        pk=r["pk"], connector=f"{r['charge_point__charge_point_id']} #{r['connector_number']}",
        resident=r["resident__user__name"] or r["resident__user__email"] or r["id_tag"] or "",
        unit=r["resident__unit__number"] or "", started_at=r["started_at"], stopped_at=r["stopped_at"],
        stop_reason=r["stop_reason"], energy_wh=r["energy_wh"],
        total=r["charge__total"] if r["charge__status"] == "priced" else None, currency=r["charge__currency"] or "",
        held=r["charge__status"] == "held") for r in rows]


def chart(hours: int, now: datetime) -> dict[str, Any]:
    """The last ``hours`` at the node the site meter measures (the supply when there is no meter), a row a minute
    (apps/console/history.py). Three queries, however many readings and runs."""
    meter = (SiteMeter.objects.filter(removed_at__isnull=True).select_related("circuit")
             .order_by("circuit__parent_id", "key").first())  # the supply's meter first
    node = meter.circuit.key if meter is not None else (
        Circuit.objects.filter(parent__isnull=True, removed_at__isnull=True).values_list("key", flat=True).first())
    end = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - timedelta(hours=hours)
    meter_rows: list[history.MeterMinute] = []
    if meter is not None:
        rows = (SiteMeterReading.objects.filter(meter=meter, sampled_at__gte=start, sampled_at__lt=end)
                .annotate(minute=TruncMinute("sampled_at", tzinfo=UTC)).values("minute")
                .annotate(l1=Max("current_l1_a"), l2=Max("current_l2_a"), l3=Max("current_l3_a")).order_by("minute"))
        meter_rows = [history.MeterMinute(r["minute"], (r["l1"], r["l2"], r["l3"])) for r in rows]
    runs: list[history.RunMinute] = []
    if node is not None:
        # The latest run of each minute of the window, and the one in force when it opens.
        in_window = (BalancingRun.objects.filter(started_at__gte=start, started_at__lt=end)
                     .annotate(minute=TruncMinute("started_at", tzinfo=UTC), node=KeyTransform(node, "nodes"))
                     .order_by("minute", "-started_at", "-id").distinct("minute").values("minute", "node"))
        before = (BalancingRun.objects.filter(started_at__lt=start).order_by("-started_at", "-id")
                  .annotate(node=KeyTransform(node, "nodes")).values("started_at", "node").first())
        if before is not None:
            runs.append(history.RunMinute(before["started_at"], before["node"] or {}))
        runs += [history.RunMinute(r["minute"], r["node"] or {}) for r in in_window]
    return {"node": node or "", "hours": hours, **history.minutes(meter_rows, runs, start=start, end=end)}
