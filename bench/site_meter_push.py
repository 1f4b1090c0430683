"""Site-meter HTTP push benchmark: readings per second one daphne process accepts, and the request latency.

Run bench/setup_bench.py first (it creates the benchmark database and the building), then:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hoa_bench REDIS_URL=redis://127.0.0.1:6379/4 \
    CHANNEL_LAYER_PREFIX=hoabench .venv/bin/python bench/site_meter_push.py --seconds 60 --clients 8 --batch 10

What it does, on loopback, for a bounded time:
1. gives the benchmark building a site meter ``bench-meter`` (HTTP push, a known token), replacing any other;
2. starts ONE daphne process with the Procfile's flags on a free port;
3. ``--clients`` keep-alive HTTP/1.1 connections each POST, one after the other, a body of ``--batch``
   three-phase readings to ``/api/v1/site-meters/bench-meter/readings`` on the building's host, every
   timestamp new (within the last hour), for ``--seconds``;
4. counts readings accepted (from the 202 answers), answers by status, and the latency of every request
   (send to the end of the answer). Results are printed and written to .local/bench/ as JSON.

Raw readings written by a run stay in the benchmark database until retention purges them.
A meaningful number needs a quiet machine: the client shares it with daphne, PostgreSQL and Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".local" / "bench"
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(1, str(ROOT))
from setup_bench import SLUG  # noqa: E402

from bench.common import free_port  # noqa: E402
from hoa_charging.procfile import daphne_listen_flags, daphne_websocket_flags  # noqa: E402

METER = "bench-meter"
TOKEN = "bench-meter-token-0123456789"
HOST = f"{SLUG}.localhost"


def prepare_meter() -> None:
    """The building's site meter for the run (the Django ORM, in the benchmark building's schema)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")
    django.setup()
    from django.utils import timezone

    from apps.core.tenants import in_condominium
    from apps.electrical import latest
    from apps.electrical.models import Circuit, SiteMeter
    from apps.electrical.tokens import hash_meter_token
    from apps.tenancy.models import Condominium

    schema = f"condo_{SLUG.replace('-', '_')}"
    if not Condominium.objects.filter(schema_name=schema).exists():
        raise SystemExit("no benchmark building: run bench/setup_bench.py --chargers 1 first")
    with in_condominium(schema):
        SiteMeter.objects.exclude(key=METER).filter(removed_at__isnull=True).update(removed_at=timezone.now())
        SiteMeter.objects.update_or_create(key=METER, defaults={
            "circuit": Circuit.objects.get(key="supply"), "source": SiteMeter.Source.API,
            "token_hash": hash_meter_token(TOKEN), "stale_after_s": 15, "settings": {}, "removed_at": None})
    latest.forget(schema)


def start_daphne(port: int, log) -> subprocess.Popen:
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), *daphne_listen_flags(port), "--access-log", os.devnull,
         *daphne_websocket_flags(), "hoa_charging.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("daphne exited; see the log in .local/bench/")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.05)
    raise SystemExit("daphne did not start")


class Results:
    def __init__(self) -> None:
        self.accepted = 0
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []


async def client(n: int, port: int, batch: int, until: float, base: datetime, results: Results) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    try:
        while time.monotonic() < until:
            readings = []
            for _ in range(batch):
                # Every timestamp new: the client number and a counter, in microseconds, inside the last hour.
                at = base + timedelta(microseconds=sent * 1000 + n)
                sent += 1
                readings.append({"timestamp": at.isoformat().replace("+00:00", "Z"),
                                 "current_a": [41.2, 38.0, 44.9]})
            body = json.dumps({"readings": readings}).encode()
            request = (f"POST /api/v1/site-meters/{METER}/readings HTTP/1.1\r\nHost: {HOST}\r\n"
                       f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            started = time.monotonic()
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            if not status_line:
                break
            status = int(status_line.split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            results.latencies.append(time.monotonic() - started)
            results.statuses[status] = results.statuses.get(status, 0) + 1
            if status == 202:
                results.accepted += json.loads(answer)["accepted"]
    finally:
        writer.close()


async def run(port: int, clients: int, batch: int, seconds: float) -> tuple[Results, float]:
    results = Results()
    base = datetime.now(UTC) - timedelta(hours=1)
    started = time.monotonic()
    until = started + seconds
    # Each client owns its own microseconds: n < 1000 keeps the timestamps of different clients apart.
    await asyncio.gather(*(client(n, port, batch, until, base, results) for n in range(clients)))
    return results, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=10, help="readings per request (1-100)")
    args = parser.parse_args()
    if not 1 <= args.batch <= 100 or not 1 <= args.clients < 1000:
        parser.error("--batch must be 1-100 and --clients 1-999")
    os.environ.setdefault("HOA_ENV", "development")
    if "bench" not in os.environ.get("DATABASE_URL", ""):
        print("set DATABASE_URL to the benchmark database (its name must contain 'bench')", file=sys.stderr)
        return 2
    prepare_meter()
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with (OUT / "site-meter-daphne.log").open("w") as log:
        daphne = start_daphne(port, log)
        try:
            results, elapsed = asyncio.run(run(port, args.clients, args.batch, args.seconds))
        finally:
            daphne.terminate()
            daphne.wait(10)
    lat = sorted(results.latencies) or [0.0]
    summary = {
        "at": datetime.now(UTC).isoformat(), "clients": args.clients, "batch": args.batch,
        "seconds": round(elapsed, 2), "requests": len(results.latencies), "statuses": results.statuses,
        "readings_accepted": results.accepted, "readings_per_s": round(results.accepted / elapsed, 1),
        "requests_per_s": round(len(results.latencies) / elapsed, 1),
        "latency_ms": {"p50": round(statistics.median(lat) * 1000, 1),
                       "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, 1),
                       "max": round(lat[-1] * 1000, 1)},
    }
    print(json.dumps(summary, indent=2))
    (OUT / f"site-meter-push-{datetime.now(UTC):%Y%m%dT%H%M%S}.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
