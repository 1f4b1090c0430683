"""How long one allocation cycle takes: allocate() for 100 and 1,000 connectors, and 5,000 across 100 buildings.

    python bench/allocate.py [--runs 200]

Each building: a 3-phase supply -> sub-panels -> cabinets (some with a power limit) -> guns: mostly
single-phase guns spread over L1/L2/L3, some three-phase (rotated), one DC charger in twenty; every gun
has a car with a recent meter sample, and the supply is short, so the floors, the rotation order and
several saturating constraints are all exercised. The cycle measured is a steady one (the state of the
previous cycle passed in), as the control loop runs it. No database; the clock is read here only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apps.loadbalancing.allocator import Connector, MeterReading, Node, Session, allocate

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
SINGLE = ("L1", "L2", "L3")
THREE = ("RST", "STR", "TRS")


def building(connectors: int, prefix: str = "", demand: bool = False,
             ) -> tuple[list[Node], list[Connector], list[Session]]:
    per_cabinet = 10
    cabinets = max(1, connectors // per_cabinet)
    panels = max(1, cabinets // 10)
    supply_a = Decimal(max(63, connectors * 4))  # about 12 A per single-phase gun when all charge: short
    nodes = [Node(f"{prefix}supply", (supply_a,) * 3, derate=Decimal("0.8"), margin_a=Decimal(5))]
    nodes += [Node(f"{prefix}panel-{p}", (Decimal(400),) * 3, parent=f"{prefix}supply") for p in range(panels)]
    guns: list[Connector] = []
    for c in range(cabinets):
        key = f"{prefix}cabinet-{c}"
        nodes.append(Node(key, (Decimal(63 if c % 3 else 40),) * 3, parent=f"{prefix}panel-{c % panels}",
                          max_power_w=22_000 + 1_000 * (c % 7) if c % 2 else None))
        for g in range(per_cabinet):
            n = c * per_cabinet + g
            if n >= connectors:
                break
            name = f"{prefix}cp-{n}"
            if n % 20 == 19:
                guns.append(Connector(name, key, phases=3, rotation="RST", dc=True, max_power_w=50_000,
                                      min_power_w=5_000, efficiency=Decimal("0.93"), min_current_a=Decimal(0)))
            elif n % 5 == 4:
                guns.append(Connector(name, key, phases=3, rotation=THREE[n % 3], max_current_a=Decimal(16)))
            else:
                guns.append(Connector(name, key, rotation=SINGLE[n % 3], max_current_a=Decimal(32),
                                      step_a=Decimal(1) if n % 7 == 0 else Decimal("0.1")))
    sessions = [
        Session(id=f"s-{g.key}", connector=g.key, arrived_at=T0 - timedelta(seconds=37 * i),
                draw_a=None if g.dc else (Decimal("9.5"), Decimal("9.4"), Decimal("9.6")),
                draw_w=12_000 if g.dc else None, draw_at=T0, priority=Decimal(2) if i % 11 == 0 else Decimal(1),
                energy_wh=(i * 1_733) % 20_000 if demand else 0,
                demand_wh=20_000 + (i * 7_919) % 50_000 if demand else None,
                departure=T0 + timedelta(hours=8, minutes=i % 300) if demand else None)
        for i, g in enumerate(guns)
    ]
    return nodes, guns, sessions


def measure(
    trees: list[tuple[list[Node], list[Connector], list[Session]]], runs: int,
) -> tuple[list[float], list[float]]:
    """Milliseconds per cycle (all trees), wall and CPU, the previous cycle's state passed in as in production.

    CPU time (time.process_time) is what the cycle costs this process; on a shared machine the wall time
    also counts the time spent waiting for a core."""
    states: list[object] = [None] * len(trees)
    readings = [[MeterReading(t[0][0].key, (Decimal(80), Decimal(70), Decimal(90)), T0)] for t in trees]
    for i, (nodes, connectors, sessions) in enumerate(trees):  # first cycle: the state to start from
        states[i] = allocate(nodes, connectors, sessions, readings[i], None, T0).state
    wall, cpu = [], []
    for run in range(runs):
        now = T0 + timedelta(seconds=1 + run % 5)
        start, start_cpu = time.perf_counter(), time.process_time()
        for i, (nodes, connectors, sessions) in enumerate(trees):
            allocate(nodes, connectors, sessions, readings[i], states[i], now)  # type: ignore[arg-type]
        cpu.append((time.process_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)
    return wall, cpu


def report(label: str, measured: tuple[list[float], list[float]]) -> None:
    def stats(times: list[float]) -> str:
        times = sorted(times)
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        return f"median {statistics.median(times):7.2f} ms  p95 {p95:7.2f} ms"

    wall, cpu = measured
    print(f"{label:<34} wall {stats(wall)}   cpu {stats(cpu)}   ({len(wall)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--demand", action="store_true", help="every car carries its demand and departure")
    args = parser.parse_args()
    report("100 connectors, one building", measure([building(100, demand=args.demand)], args.runs))
    report("1,000 connectors, one building", measure([building(1000, demand=args.demand)],
                                                     max(20, args.runs // 4)))
    many = [building(50, prefix=f"b{i}-", demand=args.demand) for i in range(100)]
    report("5,000 connectors in 100 buildings", measure(many, max(10, args.runs // 10)))


if __name__ == "__main__":
    main()
