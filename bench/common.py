"""What the benchmarks share: their own database, the servers they start (daphne processes and the Procfile's
Celery workers, with the Procfile's flags), a simulated charger's OCPP-J side, the timestamps chargers send,
percentiles and CPU time.

Imported as ``bench.common`` once the project's root is on ``sys.path`` (each benchmark puts it there).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".local" / "bench"


def bench_database_url() -> str:
    """DATABASE_URL, which must name a database of its own (its name contains "bench"): a benchmark creates,
    migrates and fills it."""
    url = os.environ.get("DATABASE_URL", "")
    if "bench" not in urlparse(url).path:
        raise SystemExit("set DATABASE_URL to a dedicated benchmark database (its name must contain 'bench')")
    return url


def create_database(url: str) -> None:
    """The database ``url`` names, created when missing (through the server's ``postgres`` database)."""
    import psycopg

    name = urlparse(url).path.lstrip("/")
    admin = urlparse(url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_iso() -> str:
    """The time as chargers send it: UTC, milliseconds, Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """Count, p50 / p95 / p99 and max of durations in seconds, in milliseconds."""
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"count": len(ordered), "p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 1)}


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time of a process (and, with ``children``, of its descendants); 0 once it is gone."""
    total = 0.0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        if children:
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                total += cpu_seconds(int(child), children=True)
    return total


def start_servers(ports: Sequence[int], log: IO, log_name: str, workers: bool = True) -> list[subprocess.Popen]:
    """A daphne process on each port and, with ``workers``, the Procfile's Celery workers (one per queue: the
    balancer's runs, the calls to chargers, the rest) after purging what an earlier run left queued; all with
    the Procfile's flags, logging to ``log``. Returns once every daphne listens (the processes: daphnes
    first); exits naming ``log_name`` when one of them stops first."""
    from hoa_charging.procfile import celery_workers, daphne_listen_flags, daphne_websocket_flags

    env = {**os.environ, "LOG_LEVEL": "WARNING", "LOADBALANCING_ENABLED": "1"}
    processes = []
    if workers:
        subprocess.run([sys.executable, "-m", "celery", "-A", "hoa_charging", "purge", "-f"], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)
    processes += [subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), *daphne_listen_flags(port), "--access-log", os.devnull,
         *daphne_websocket_flags(), "hoa_charging.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT) for port in ports]
    if workers:
        processes += [subprocess.Popen([sys.executable, "-m", "celery", *args, "--without-heartbeat",
                                        "--without-mingle", "--without-gossip"],
                                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
                      for args in celery_workers("WARNING").values()]
    deadline = time.monotonic() + 60
    waiting = set(ports)
    while time.monotonic() < deadline and waiting:
        if any(p.poll() is not None for p in processes):
            stop_all(processes)
            raise SystemExit(f"daphne or a worker exited; see {log_name}")
        for port in list(waiting):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    waiting.discard(port)
        time.sleep(0.05)
    if waiting:
        stop_all(processes)
        raise SystemExit(f"daphne did not start; see {log_name}")
    return processes


def stop_all(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to each, then SIGKILL to whatever has not stopped 30 s later."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def charger_configuration(connectors: int) -> list[dict]:
    """What the benchmarks' chargers answer GetConfiguration with: meter values every 10 s (energy and
    current), smart charging in amperes up to stack level 8."""
    return [
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "10"},
        {"key": "MeterValuesSampledData", "readonly": False, "value": "Energy.Active.Import.Register,Current.Import"},
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        {"key": "NumberOfConnectors", "readonly": True, "value": str(connectors)},
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
        {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
    ]


class OcppCharger:
    """A simulated charger's OCPP-J side, for the benchmarks' own chargers: its connection (Basic auth,
    ocpp1.6), its calls with their answers matched by unique id, and answers to the platform's calls:
    GetConfiguration with ``configuration``, GetLocalListVersion 0, anything else Accepted, after handing
    it to ``on_call`` (a SetChargingProfile, for instance)."""

    def __init__(self, charge_point_id: str, password: str, base_url: str, configuration: list[dict],
                 answer_timeout_s: float = 60):
        self.id = charge_point_id
        self.url = base_url + charge_point_id
        self.auth = "Basic " + base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
        self.configuration = configuration
        self.answer_timeout_s = answer_timeout_s
        self.ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future] = {}
        self.ws: Any = None
        self.reader: asyncio.Task | None = None

    @contextlib.asynccontextmanager
    async def connected(self, open_timeout: float) -> AsyncIterator[None]:
        from websockets.asyncio.client import connect

        async with connect(self.url, subprotocols=["ocpp1.6"], additional_headers={"Authorization": self.auth},
                           open_timeout=open_timeout, ping_interval=None, compression=None, proxy=None) as ws:
            self.ws = ws
            self.reader = asyncio.create_task(self._read())
            try:
                yield
            finally:
                self.reader.cancel()

    async def call(self, action: str, payload: dict) -> dict:
        """The CALLRESULT's payload; {} after a CALLERROR (handed to ``on_error``)."""
        unique_id = str(next(self.ids))
        future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = future
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        try:
            reply = await asyncio.wait_for(future, self.answer_timeout_s)
        finally:
            self.pending.pop(unique_id, None)
        if reply[0] != 3:
            self.on_error(action, reply)
            return {}
        return reply[2]

    def on_call(self, action: str, payload: dict) -> None:
        """A call of the platform's, before it is answered."""

    def on_error(self, action: str, reply: list) -> None:
        """A CALLERROR in answer to one of ours."""

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if message[0] == 2:
                action, payload = message[2], message[3]
                if action == "GetConfiguration":
                    answer: dict = {"configurationKey": self.configuration}
                elif action == "GetLocalListVersion":
                    answer = {"listVersion": 0}
                else:
                    self.on_call(action, payload)
                    answer = {"status": "Accepted"}
                await self.ws.send(json.dumps([3, message[1], answer]))
            else:
                future = self.pending.get(message[1])
                if future is not None and not future.done():
                    future.set_result(message)
