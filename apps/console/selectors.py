"""What the building console reads, in the building's schema: the tree, the connectors and the sessions under way
from the database (a fixed number of queries, however many chargers), the chargers' live state from Redis (one
pipelined round trip, no query), the latest balancing run. apps/console/board.py makes the picture of them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Prefetch

from apps.charging.models import ChargePoint, ChargingSession, Connector
from apps.console import board
from apps.electrical.models import Circuit
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
    """Three queries: circuits, chargers with their connectors and spots, open sessions with their residents."""
    circuits = tuple(
        board.CircuitInfo(key=c.key, name=c.name, parent=c.parent.key if c.parent_id else None,
                          limit_a=_usable(c), max_power_w=c.max_power_w)
        for c in Circuit.objects.filter(removed_at__isnull=True).select_related("parent")
    )
    chargers = ChargePoint.objects.filter(removed_at__isnull=True).select_related("circuit").prefetch_related(
        Prefetch("connectors", queryset=Connector.objects.filter(removed_at__isnull=True)
                 .select_related("parking_spot").order_by("connector_id")))
    connectors = tuple(
        board.ConnectorInfo(key=f"{cp.charge_point_id}#{c.connector_id}", charge_point_id=cp.charge_point_id,
                            number=c.connector_id, circuit=cp.circuit.key if cp.circuit_id else "",
                            rotation=c.phase_rotation, spot=c.parking_spot.label if c.parking_spot_id else "",
                            dc=c.is_dc)
        for cp in chargers for c in cp.connectors.all()
    )
    return Structure(circuits=circuits, connectors=connectors, sessions=open_sessions())


def open_sessions() -> dict[str, board.SessionInfo]:
    """The sessions under way, by connector key, with their resident (one query)."""
    rows = (ChargingSession.objects.filter(stopped_at__isnull=True, connector__isnull=False)
            .select_related("charge_point", "connector", "resident__user", "resident__unit")
            .order_by("started_at", "pk"))
    found: dict[str, board.SessionInfo] = {}
    for s in rows:
        resident = s.resident
        found[f"{s.charge_point.charge_point_id}#{s.connector.connector_id}"] = board.SessionInfo(
            transaction_id=s.transaction_id,
            resident=(resident.user.name or resident.user.email) if resident is not None else "",
            unit=resident.unit.number if resident is not None else "", started_at=s.started_at)
    return found


def _usable(circuit: Circuit) -> tuple[Decimal, Decimal, Decimal]:
    """What the node may carry per phase as the balancer counts it: rated x derate, less the margin."""
    def usable(rated: Decimal) -> Decimal:
        return max(rated * circuit.derate - circuit.margin_a, Decimal(0)).quantize(board.TENTH)

    return usable(circuit.max_current_l1_a), usable(circuit.max_current_l2_a), usable(circuit.max_current_l3_a)


def latest_run_id() -> int | None:
    """The latest balancing run's id (one small query), to know whether the picture's run is still the latest."""
    return BalancingRun.objects.order_by("-started_at", "-id").values_list("id", flat=True).first()


def run_info(run_id: int | None = None) -> board.RunInfo | None:
    """The latest run (or the one named), with what the picture needs of it."""
    runs = BalancingRun.objects.order_by("-started_at", "-id").only("id", "started_at", "limits", "nodes")
    run = runs.filter(pk=run_id).first() if run_id is not None else runs.first()
    if run is None:
        return None
    return board.RunInfo(run_id=run.pk, started_at=run.started_at, limits=run.limits, nodes=run.nodes)


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
