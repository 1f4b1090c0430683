"""One balancing run of a building: read, allocate, hand the limits to the dispatch, record why.

Call inside the building's schema, one run at a time per building (apps/loadbalancing/triggers.py holds
the building's lock in Redis). The allocator is pure (allocator.py); this module is the glue:

1. the inputs: tree, connectors, open sessions with their live currents, the latest site-meter reading
   (inputs.py: a fixed number of queries and two Redis round trips; what each car needs);
2. ``allocate()`` with the state kept in Redis from the last run;
3. ``limits_set()`` (apps.charging.smart_charging): the dispatch sends decreases first, increases once
   they are acknowledged, each as a TxProfile whose lease falls back to the floor from ``lease_floors``;
4. a BalancingRun row: the limits and, for each connector, the constraint that bound it.

A periodic refresh (``refresh=True``) reads, allocates and records like any run (the allocation depends on
the clock too: a meter going silent, minimum run and pause times), but asks for the same limits again only
once a lease has passed since they were last asked, or when a connector's limit waits for its transaction:
a building where nothing changed costs no write to its limits and queues no dispatch. (The leases are
renewed by the dispatch, each building at its own renewal times: apps/charging/leases.py.) A run on an event
never skips them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.charging.models import ConnectorLimit
from apps.charging.smart_charging import Limit, limits_set
from apps.core import live_store
from apps.loadbalancing import allocator, statecodec
from apps.loadbalancing.inputs import BuildingInputs, building_inputs
from apps.loadbalancing.models import BalancingRun

log = logging.getLogger(__name__)
TENTH = Decimal("0.1")
PERIODIC = "periodic refresh"  # the trigger of the beat's refresh (tasks.rebalance_all)


def _state_key(schema_name: str) -> str:
    return live_store.prefixed("lb", f"state:{schema_name}")


def state_load(schema_name: str) -> allocator.AllocatorState | None:
    return statecodec.decode(live_store.sync_client().get(_state_key(schema_name)))


def state_save(schema_name: str, state: allocator.AllocatorState) -> None:
    # Kept a day: a building nobody balanced for that long starts afresh, which is safe.
    live_store.sync_client().set(_state_key(schema_name), statecodec.encode(state), ex=86400)


def _asked_key(schema_name: str) -> str:
    return live_store.prefixed("lb", f"asked:{schema_name}")


def _asked_digest(wanted: dict[int, Limit], lease_s: int) -> str:
    text = ";".join(f"{pk}={limit.current_a}/{limit.floor_a}" for pk, limit in sorted(wanted.items()))
    return hashlib.blake2b(f"{lease_s}|{text}".encode(), digest_size=16).hexdigest()


def _ask_again(schema_name: str, wanted: dict[int, Limit], lease_s: int) -> bool:
    """A periodic refresh: whether to hand the same limits to ``limits_set`` again. Yes when they differ from
    the ones asked last, when a lease has passed since they were asked (the key expires then), or when a
    connector's limit waits for its transaction (asking again is what sends it once the transaction is
    there)."""
    if live_store.sync_client().get(_asked_key(schema_name)) != _asked_digest(wanted, lease_s):
        return True
    return ConnectorLimit.objects.filter(connector_id__in=list(wanted),
                                         status=ConnectorLimit.Status.NO_TRANSACTION).exists()


def _asked(schema_name: str, wanted: dict[int, Limit], lease_s: int) -> None:
    """The mark of what was asked lives a lease. The leases are renewed by the dispatch on the building's own
    schedule (apps/charging/leases.py: the dispatch queued for each renewal time, and the catch-up for any
    lease due), not by asking for the same limits again; the refresh asks once a lease all the same, so that
    limits changed outside the balancer (by hand, in the database) are put right within a lease."""
    live_store.sync_client().set(_asked_key(schema_name), _asked_digest(wanted, lease_s), ex=lease_s)


def _amps(limit: allocator.Limit, inputs: BuildingInputs, voltages: dict[str, int]) -> Decimal:
    """What the dispatch is told, in A per phase. A DC limit (W of output) is expressed as the dispatch turns
    it back into watts (A x V x phases), rounded down, so the charger is sent at most the allocated W."""
    if limit.amps is not None:
        return limit.amps
    connector = next(c for c in inputs.connectors if c.key == limit.connector)
    volts = voltages.get(connector.node, 230) * max(connector.phases, 1)
    return (Decimal(limit.watts or 0) / volts).quantize(TENTH, rounding=ROUND_DOWN)


@dataclass(frozen=True)
class RunResult:
    run: BalancingRun
    allocation: allocator.Allocation


def building_rebalance(*, trigger: str, now: datetime | None = None, refresh: bool = False) -> RunResult | None:
    """None: the building has no connectors to balance. ``refresh``: the periodic refresh, which asks for
    unchanged limits again only when due (module docstring)."""
    now = now or timezone.now()
    schema = connection.schema_name
    began = time.perf_counter()
    inputs = building_inputs(now=now)
    if not inputs.connectors:
        return None
    params = allocator.Parameters(stale_ev_budget_a=inputs.safe_ev_budget_a,
                                  pace=settings.LOADBALANCING_SIMULATION_SPEED)
    started = time.perf_counter()
    allocation = allocator.allocate(inputs.nodes, inputs.connectors, inputs.sessions, inputs.meters,
                                    state_load(schema), now, params)
    floors = allocator.lease_floors(inputs.nodes, inputs.connectors, now, params)
    allocate_us = int((time.perf_counter() - started) * 1_000_000)
    voltages = {node.key: node.voltage_v for node in inputs.nodes}
    wanted: dict[int, Limit] = {}
    for key, limit in allocation.limits.items():
        amps = _amps(limit, inputs, voltages)
        floor = floors.get(key)
        floor_a = min(_amps(floor, inputs, voltages), amps) if floor is not None else Decimal(0)
        wanted[inputs.connector_pks[key]] = Limit(current_a=amps, floor_a=floor_a)
    changed = 0
    lease_s = settings.LOADBALANCING_LEASE_S
    if wanted and (not refresh or _ask_again(schema, wanted, lease_s)):
        reasons = "; ".join(sorted({allocation.why[key].why.value for key in allocation.limits}))
        changed = limits_set(limits=wanted, lease_s=lease_s, reason=f"balancer ({trigger}): {reasons}"[:300],
                             now=now)
        _asked(schema, wanted, lease_s)
    state_save(schema, allocation.state)
    run = BalancingRun.objects.create(
        started_at=now, trigger=trigger[:120], duration_us=int((time.perf_counter() - began) * 1_000_000),
        allocate_us=allocate_us,
        meter_age_ms=int(inputs.meter_age_s * 1000) if inputs.meter_age_s is not None else None,
        sessions=len(inputs.sessions), changed=changed,
        non_ev_a={node: [str(a) for a in phases] for node, phases in allocation.non_ev_a.items()},
        limits=_limits_record(allocation, inputs, voltages),
        nodes={key: {"capacity_a": [str(a) for a in budget.capacity_a],
                     "planned_a": [str(a) for a in budget.planned_a],
                     "non_ev_a": [str(a) for a in budget.non_ev_a],
                     "unmanaged_a": [str(a) for a in budget.unmanaged_a]}
               for key, budget in allocation.nodes.items()},
        warnings=list(allocation.warnings),
    )
    return RunResult(run, allocation)


def _limits_record(allocation: allocator.Allocation, inputs: BuildingInputs, voltages: dict[str, int]) -> dict:
    by_key = {connector.key: connector for connector in inputs.connectors}
    record = {}
    for key, binding in allocation.why.items():
        connector = by_key.get(key)
        limit = allocation.limits.get(key)
        entry: dict = {"pk": inputs.connector_pks.get(key), "why": binding.why.value, "sentence": binding.sentence,
                       "node": binding.node, "phase": binding.phase}
        if connector is not None:
            entry["max_a"] = str(connector.max_current_a) if not connector.dc else None
            entry["max_w"] = connector.max_power_w if connector.dc else None
        if limit is not None:
            entry["a"] = str(limit.amps) if limit.amps is not None else None
            entry["w"] = limit.watts
            entry["grid_a"] = [str(a) for a in limit.grid_a]
        record[key] = entry
    return record


def runs_purge(*, now: datetime | None = None) -> int:
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.LOADBALANCING_RUN_RETENTION_DAYS)
    deleted, _ = BalancingRun.objects.filter(started_at__lt=cutoff).delete()
    return deleted


def latest_run() -> BalancingRun | None:
    return BalancingRun.objects.order_by("-started_at", "-id").first()
