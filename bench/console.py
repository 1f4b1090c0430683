"""The building console with 200 connectors: the page's server time and queries, and one live push's cost.

    export HOA_ENV=development DATABASE_URL=postgres://postgres@127.0.0.1:5432/hoa_bench_console \
        REDIS_URL=redis://127.0.0.1:6379/6
    .venv/bin/python bench/setup_bench.py --chargers 100      # once: bench-tower, 100 chargers x 2 connectors
    .venv/bin/python bench/console.py --rounds 50

Before measuring it makes the building busy: every charger connected in Redis with both connectors charging
(currents on their phase, energy), a session under way on every connector (a resident's, for the first 50),
and a balancing run whose record gives every connector a limit and a reason. Then:
- *page*: GET /console/ as the building's manager through Django's full request path (middleware, session,
  tenant, template), ``--rounds`` times after two warm-up requests: server time p50 / p95 / max and queries;
- *push*: what the live view does each CONSOLE_PUSH_MS for one viewer (apps/console/consumers.py): read the
  chargers' live state (one Redis round trip), make the picture, its JSON and what changed since the last push,
  with one connector's current moving each time: p50 / p95 / max, and database queries (must be 0).
Results are printed and written to .local/bench/console-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import OUT, bench_database_url, percentiles

SLUG = "bench-tower"
TAG = "CONSOLEBENCH"


def prepare(schema: str) -> tuple[list[str], object]:
    from django.utils import timezone

    from apps.accounts.models import CompanyMembership, User
    from apps.buildings.models import Resident, Unit
    from apps.charging.models import ChargePoint, ChargingSession, Connector
    from apps.core.tenants import in_public_schema, in_schema
    from apps.loadbalancing.models import BalancingRun
    from apps.ocpp import live
    from apps.tenancy.models import Condominium

    with in_public_schema():
        condo = Condominium.objects.get(schema_name=schema)
        user, _ = User.objects.get_or_create(email="console-bench@bench.example", defaults={"name": "Bench Manager"})
        CompanyMembership.objects.get_or_create(user=user, company=condo.company,
                                                role=CompanyMembership.Role.MANAGER)
    now = timezone.now()
    with in_schema(schema):
        ChargingSession.objects.filter(id_tag=TAG).delete()
        unit, _ = Unit.objects.get_or_create(number="B1")
        residents = []
        for n in range(50):
            person, _ = User.objects.get_or_create(email=f"resident{n}@bench.example", defaults={"name": f"R {n}"})
            resident, _ = Resident.objects.get_or_create(user=person, unit=unit)
            residents.append(resident)
        connectors = list(Connector.objects.filter(removed_at__isnull=True).select_related("charge_point")
                          .order_by("charge_point__charge_point_id", "connector_id"))
        ChargingSession.objects.bulk_create([
            ChargingSession(charge_point=c.charge_point, connector=c, connector_number=c.connector_id,
                            transaction_id=2_000_000 + i, id_tag=TAG, started_at=now, meter_start_wh=0,
                            resident=residents[i] if i < len(residents) else None)
            for i, c in enumerate(connectors)])
        limits = {f"{c.charge_point.charge_point_id}#{c.connector_id}": {
            "a": "13.4", "w": None, "why": "node-current", "node": "supply", "phase": "L1",
            "sentence": "The supply's L1 is shared by every car on it."} for c in connectors}
        BalancingRun.objects.create(started_at=now, trigger="bench", duration_us=1, allocate_us=1, limits=limits,
                                    nodes={"supply": {"capacity_a": ["400", "400", "400"],
                                                      "non_ev_a": ["120", "110", "130"],
                                                      "unmanaged_a": ["0", "0", "0"]}})
        charge_points = list(ChargePoint.objects.filter(removed_at__isnull=True)
                             .values_list("charge_point_id", flat=True))
    client = live._sync()
    pipe = client.pipeline(transaction=False)
    for i, c in enumerate(connectors):
        fields = {"connected": "1", "schema": schema, f"status:{c.connector_id}": "Charging",
                  f"current_a:{c.connector_id}:L1": "13.3", f"power_w:{c.connector_id}": "3059",
                  f"session_energy_wh:{c.connector_id}": str(1000 + i),
                  f"transaction_id:{c.connector_id}": str(2_000_000 + i)}
        pipe.hset(live.key(c.charge_point.charge_point_id), mapping=fields)
    pipe.execute()
    return charge_points, user


def measure_page(user, rounds: int) -> dict:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST=f"{SLUG}.localhost")
    client.force_login(user)
    for _ in range(2):
        assert client.get("/console/").status_code == 200
    samples, queries = [], 0
    for _ in range(rounds):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            answer = client.get("/console/")
            samples.append(time.perf_counter() - started)
        assert answer.status_code == 200
        queries = len(captured.captured_queries)
    rows = answer.content.count(b"data-connector=")
    return {"connectors_shown": rows, "queries": queries, **percentiles(samples)}


def measure_push(schema: str, rounds: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.console import board, selectors
    from apps.core.tenants import in_schema
    from apps.ocpp import live

    with in_schema(schema):
        built, run = selectors.structure(), selectors.run_info()
    first = built.connectors[0]
    client = live._sync()

    async def pushes() -> list[float]:
        samples, sent = [], None
        for n in range(rounds + 2):
            client.hset(live.key(first.charge_point_id), f"current_a:{first.number}:L1", f"{10 + n % 20}.0")
            started = time.perf_counter()
            states = {cp: live.ChargerLive.from_state(cp, state)
                      for cp, state in (await live.read_many(built.charge_point_ids)).items()}
            now = selectors.connectors_now(states, schema, built.connectors)
            wire = board.as_json(board.picture(built.circuits, built.connectors, now, built.sessions, run))
            delta = board.changes(sent, wire)
            payload = json.dumps({"type": "update", **delta})
            sent = wire
            samples.append(time.perf_counter() - started)
        assert len(payload) > 0
        return samples[2:]

    with CaptureQueriesContext(connection) as captured:
        samples = asyncio.run(pushes())
    return {"connectors": len(built.connectors), "queries": len(captured.captured_queries), **percentiles(samples)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    bench_database_url()
    os.environ.setdefault("HOA_ENV", "development")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, f"{SLUG}.localhost"]
    from apps.core.tenants import in_public_schema
    from apps.tenancy.models import Condominium

    with in_public_schema():
        schema = Condominium.objects.get(slug=SLUG).schema_name
    _, user = prepare(schema)
    result = {"at": datetime.now(UTC).isoformat(), "page": measure_page(user, args.rounds),
              "push": measure_push(schema, args.rounds)}
    print(json.dumps(result, indent=2))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"console-{int(time.time())}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
