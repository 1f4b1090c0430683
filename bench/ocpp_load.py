"""OCPP load benchmark: how many chargers one daphne process holds, the round-trip latency, the reconnect storm.

Run bench/setup_bench.py first (a synthetic building with enough chargers), then:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hoa_bench REDIS_URL=redis://127.0.0.1:6379/4 \
    CHANNEL_LAYER_PREFIX=hoabench .venv/bin/python bench/ocpp_load.py --chargers 2000 --steady 180

What it does, all on loopback, with a bounded duration:
1. starts ONE daphne process (hoa_charging.asgi:application) on a free port, or ``--daphnes N`` of them
   (charger n talks to process n mod N, as behind a proxy that hashes the URL);
2. ramps up N chargers (``--ramp-rate`` new connections per second): websocket with ocpp1.6 and Basic
   auth, BootNotification, StatusNotification for connector 0 and each connector, and StartTransaction
   on ``--active`` of the connectors; it answers the platform's calls (GetConfiguration,
   ChangeConfiguration...) like a charger;
3. steady state for ``--steady`` seconds: every charger sends Heartbeat every ``--heartbeat`` s and
   MeterValues (energy register, per-phase current, power) every ``--meter-interval`` s per active
   connector, each at a random phase; the round trip of every CALL is recorded (send to CALLRESULT);
4. the reconnect storm: daphne is stopped and started again; every charger retries about once a second
   (with jitter) and, once in, sends BootNotification and a StatusNotification per connector. "Settled" is
   when the last charger has had all of them answered, its BootNotification Accepted (a charger told Pending
   boots again after the interval, as OCPP says); measured from the moment the new daphne listens.

The client is plain asyncio + websockets (no ocpp package) to keep its own overhead low; it shares the
machine with daphne, PostgreSQL and Redis, so its CPU use is reported too. Results are printed and written
to .local/bench/ as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import itertools
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".local" / "bench"
SLOW_S = 0.2  # the steady state's target p99
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(1, str(ROOT))
from setup_bench import charger_id, password  # noqa: E402

from bench.common import now_iso, percentiles  # noqa: E402
from hoa_charging.procfile import daphne_listen_flags, daphne_websocket_flags  # noqa: E402

CONFIGURATION = [
    {"key": "MeterValueSampleInterval", "readonly": False, "value": "15"},
    {"key": "MeterValuesSampledData", "readonly": False,
     "value": "Energy.Active.Import.Register,Current.Import,Power.Active.Import"},
    {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
    {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
    {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
]


@dataclass
class Recorder:
    phase: str = "ramp"
    rtts: dict[str, list[float]] = field(default_factory=dict)
    by_action: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    # The steady state's slowest round trips, with the wall-clock second each was answered: (ms, at, action).
    slow: list[tuple[float, float, str]] = field(default_factory=list)

    def record(self, action: str, rtt: float) -> None:
        self.rtts.setdefault(self.phase, []).append(rtt)
        self.by_action.setdefault(self.phase, {}).setdefault(action, []).append(rtt)
        if self.phase == "steady" and rtt >= SLOW_S:
            self.slow.append((round(rtt * 1000, 1), round(time.time(), 3), action))

    def error(self, kind: str) -> None:
        key = f"{self.phase}:{kind}"
        self.errors[key] = self.errors.get(key, 0) + 1


class BenchCharger:
    def __init__(self, n: int, args: argparse.Namespace, url: str, rec: Recorder, rng: random.Random):
        self.id = charger_id(n)
        self.url = url + self.id
        self.auth = "Basic " + base64.b64encode(f"{self.id}:{password(self.id)}".encode()).decode()
        self.args = args
        self.rec = rec
        self.rng = rng
        self.connectors = list(range(1, args.connectors + 1))
        self.active = [c for c in self.connectors if rng.random() < args.active]
        self.register = {c: rng.randrange(0, 1_000_000) for c in self.connectors}
        self.tx: dict[int, int] = {}
        self.ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future] = {}
        self.ws: ClientConnection | None = None
        self.ready_at: float | None = None
        self.connects = 0
        self.failures = 0

    async def call(self, action: str, payload: dict) -> dict:
        assert self.ws is not None
        unique_id = str(next(self.ids))
        future = asyncio.get_running_loop().create_future()
        self.pending[unique_id] = future
        started = time.perf_counter()
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        try:
            reply = await asyncio.wait_for(future, self.args.timeout)
        except TimeoutError:
            self.rec.error(f"timeout {action}")
            raise
        finally:
            self.pending.pop(unique_id, None)
        self.rec.record(action, time.perf_counter() - started)
        if reply[0] != 3:
            self.rec.error(f"callerror {action} {reply[2]}")
            return {}
        return reply[2]

    async def reader(self) -> None:
        assert self.ws is not None
        async for raw in self.ws:
            message = json.loads(raw)
            if message[0] == 2:
                action = message[2]
                if action == "GetConfiguration":
                    answer: dict = {"configurationKey": CONFIGURATION}
                elif action in ("GetLocalListVersion",):
                    answer = {"listVersion": 0}
                else:
                    answer = {"status": "Accepted"}
                await self.ws.send(json.dumps([3, message[1], answer]))
            else:
                future = self.pending.get(message[1])
                if future is not None and not future.done():
                    future.set_result(message)

    async def boot(self, first: bool) -> None:
        while True:
            reply = await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Load",
                                                         "chargePointSerialNumber": self.id, "firmwareVersion": "1"})
            if reply.get("status") != "Pending":
                break
            # As OCPP says: stay connected, boot again after the interval (the platform is saturated).
            self.rec.error("boot Pending")
            await asyncio.sleep(reply.get("interval") or 10)
        for c in [0, *self.connectors]:
            status = "Charging" if c in self.active else "Available"
            await self.call("StatusNotification", {"connectorId": c, "errorCode": "NoError", "status": status,
                                                   "timestamp": now_iso()})
        if first:
            for c in self.active:
                reply = await self.call("StartTransaction", {"connectorId": c, "idTag": "BENCHTAG",
                                                             "meterStart": self.register[c], "timestamp": now_iso()})
                self.tx[c] = reply.get("transactionId", -1)
        self.ready_at = time.monotonic()

    async def traffic(self, stop: asyncio.Event) -> None:
        """Heartbeats and MeterValues on their schedules, each at a random phase."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        due = {"hb": start + self.rng.uniform(0, self.args.heartbeat)}
        for c in self.active:
            due[c] = start + self.rng.uniform(0, self.args.meter_interval)
        while not stop.is_set():
            what, when = min(due.items(), key=lambda kv: kv[1])
            delay = when - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return
            if what == "hb":
                await self.call("Heartbeat", {})
                due["hb"] = when + self.args.heartbeat
            else:
                c = int(what)
                self.register[c] += 30  # 7.2 kW for 15 s
                await self.call("MeterValues", {"connectorId": c, "transactionId": self.tx.get(c, -1), "meterValue": [{
                    "timestamp": now_iso(), "sampledValue": [
                        {"value": str(self.register[c]), "measurand": "Energy.Active.Import.Register", "unit": "Wh",
                         "context": "Sample.Periodic"},
                        {"value": "31.4", "measurand": "Current.Import", "phase": "L1", "unit": "A",
                         "context": "Sample.Periodic"},
                        {"value": "7222", "measurand": "Power.Active.Import", "unit": "W",
                         "context": "Sample.Periodic"},
                    ]}]})
                due[c] = when + self.args.meter_interval

    async def run(self, stop: asyncio.Event, traffic_on: asyncio.Event) -> None:
        first = True
        while not stop.is_set():
            try:
                async with connect(self.url, subprotocols=["ocpp1.6"], additional_headers={"Authorization": self.auth},
                                   open_timeout=self.args.timeout, ping_interval=None, compression=None,
                                   proxy=None) as ws:
                    self.ws = ws
                    self.connects += 1
                    self.failures = 0
                    reader = asyncio.create_task(self.reader())
                    try:
                        await self.boot(first)
                        first = False
                        await traffic_on.wait()
                        talker = asyncio.create_task(self.traffic(stop))
                        await asyncio.wait({reader, talker}, return_when=asyncio.FIRST_COMPLETED)
                        talker.cancel()
                        if reader.done() and reader.exception() is None and not stop.is_set():
                            raise websockets.ConnectionClosedOK(None, None)
                        if talker.done() and not talker.cancelled() and talker.exception():
                            raise talker.exception()  # type: ignore[misc]
                    finally:
                        reader.cancel()
            except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as error:
                self.ready_at = None
                self.rec.error(f"connection {error.__class__.__name__}")
            finally:
                self.ws = None
            if not stop.is_set():
                await asyncio.sleep(self.retry_delay())
                self.failures += 1
            else:
                break

    def retry_delay(self) -> float:
        if self.args.retry == "fixed":  # the harshest charger firmware: about once a second, for ever
            return self.rng.uniform(0.5, 1.5)
        # Exponential backoff with full jitter (what the simulator does, and OCPP 2.0.1's RetryBackOff*).
        return self.rng.uniform(0, min(self.args.retry_cap, 2.0 ** self.failures))


def settled_by(times_s: list[float], total: int) -> dict[str, float]:
    """Seconds by which 25, 50, 75, 90, 99 and 100 % of ``total`` had settled (``times_s`` sorted); a share
    not reached is left out."""
    return {f"{share}%": round(times_s[max(0, -(-total * share // 100) - 1)], 1)
            for share in (25, 50, 75, 90, 99, 100) if -(-total * share // 100) <= len(times_s)}


class Daphne:
    def __init__(self, tree: Path, log: Path, extra: list[str], profile: str = "", gc_log: str = ""):
        self.tree = tree
        self.extra = extra
        self.profile = profile
        self.gc_log = gc_log
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log.open("a")
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        self.spawn()
        return self.listening()

    def spawn(self) -> None:
        env = {**os.environ, "LOG_LEVEL": "WARNING"}
        command = [str(Path(sys.executable).parent / "daphne")]
        if self.profile:
            command = [sys.executable, str(ROOT / "bench" / "profile_daphne.py"), self.profile]
        elif self.gc_log:
            command = [sys.executable, str(ROOT / "bench" / "gc_daphne.py"), self.gc_log]
        self.process = subprocess.Popen(
            [*command, *daphne_listen_flags(self.port), "--access-log", os.devnull, *daphne_websocket_flags(),
             *self.extra, "hoa_charging.asgi:application"],
            cwd=self.tree, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def listening(self) -> float:
        """Wait until the process listens; the moment it does."""
        assert self.process is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("daphne exited; see the log in .local/bench/")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError("daphne did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> tuple[float, float]:
        """(the event loop's thread, every other thread: the database thread, the group commit, PBKDF2)."""
        assert self.process is not None
        main = others = 0.0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if task.name == str(self.process.pid):
                main += seconds
            else:
                others += seconds
        return main, others

    def rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Daphnes:
    """The daphne processes behind the chargers' one address: charger n talks to process n mod N, as a proxy that
    hashes the charger's URL would place it (the platform does not care which process holds which charger)."""

    def __init__(self, n: int, tree: Path, extra: list[str], profile: str = "", gc_log: str = ""):
        self.processes = [Daphne(tree, OUT / ("daphne.log" if n == 1 else f"daphne-{i + 1}.log"), extra, profile,
                                 gc_log if n == 1 else gc_log.replace(".jsonl", f"-{i + 1}.jsonl"))
                          for i in range(n)]

    def url(self, n: int) -> str:
        return f"ws://127.0.0.1:{self.processes[n % len(self.processes)].port}/ocpp/"

    def start(self) -> float:
        """Start them all at once; the moment the first listens (chargers reconnect from then on)."""
        for daphne in self.processes:
            daphne.spawn()
        return min(daphne.listening() for daphne in self.processes)

    def stop(self) -> None:
        for daphne in self.processes:  # all at once, as a machine's restart would
            if daphne.process is not None:
                daphne.process.terminate()
        for daphne in self.processes:
            daphne.stop()

    def cpu_seconds(self) -> float:
        return sum(daphne.cpu_seconds() for daphne in self.processes)

    def thread_cpu_seconds(self) -> tuple[float, float]:
        seconds = [daphne.thread_cpu_seconds() for daphne in self.processes]
        return sum(main for main, _ in seconds), sum(others for _, others in seconds)

    def rss_mb(self) -> float:
        return round(sum(daphne.rss_mb() for daphne in self.processes), 1)


async def bench(args: argparse.Namespace) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    daphne = Daphnes(args.daphnes, Path(args.tree).resolve(), args.daphne_arg, args.profile, args.gc_log)
    rec = Recorder()
    result: dict = {"chargers": args.chargers, "connectors_per_charger": args.connectors, "active_share": args.active,
                    "heartbeat_s": args.heartbeat, "meter_interval_s": args.meter_interval,
                    "ramp_rate": args.ramp_rate, "retry": args.retry, "daphne_args": args.daphne_arg,
                    "daphnes": args.daphnes}
    daphne.start()
    rng = random.Random(args.seed)
    chargers = [BenchCharger(n, args, daphne.url(n), rec, random.Random(rng.random()))
                for n in range(1, args.chargers + 1)]
    stop, traffic_on = asyncio.Event(), asyncio.Event()
    tasks = []
    try:
        # 1. ramp up
        t0 = time.monotonic()
        for i, charger in enumerate(chargers):
            tasks.append(asyncio.create_task(charger.run(stop, traffic_on)))
            await asyncio.sleep(max(0.0, t0 + (i + 1) / args.ramp_rate - time.monotonic()))
        while sum(c.ready_at is not None for c in chargers) < len(chargers):
            if time.monotonic() - t0 > args.ramp_timeout:
                break
            await asyncio.sleep(0.2)
        ready = sum(c.ready_at is not None for c in chargers)
        result["ramp"] = {"seconds": round(time.monotonic() - t0, 1), "ready": ready,
                          **percentiles(rec.rtts.get("ramp", []))}
        print(f"ramp: {ready}/{len(chargers)} ready in {result['ramp']['seconds']} s", flush=True)

        # 2. steady state (the first seconds after the ramp are left out: the platform's GetConfiguration calls)
        traffic_on.set()
        rec.phase = "warmup"
        await asyncio.sleep(args.warmup)
        rec.phase = "steady"
        cpu0, client0, w0 = daphne.cpu_seconds(), client_cpu(), time.monotonic()
        await asyncio.sleep(args.steady)
        wall = time.monotonic() - w0
        steady = rec.rtts.get("steady", [])
        result["steady"] = {
            "seconds": round(wall, 1), **percentiles(steady), "calls_per_s": round(len(steady) / wall, 1),
            "daphne_cpu_percent": round(100 * (daphne.cpu_seconds() - cpu0) / wall, 1),
            "client_cpu_percent": round(100 * (client_cpu() - client0) / wall, 1), "daphne_rss_mb": daphne.rss_mb(),
            "connected": sum(c.ws is not None for c in chargers),
            "by_action": {a: percentiles(v) for a, v in rec.by_action.get("steady", {}).items()},
            # When the round trips over SLOW_S were answered (wall clock, to the second) and how many: stalls
            # show as a few seconds with many, to set beside the process's log (e.g. --gc-log).
            "slow_by_second": {str(int(at)): n for at, n in sorted(collections.Counter(
                int(at) for _, at, _ in rec.slow).items())},
        }
        print("steady:", json.dumps(result["steady"]), flush=True)

        # 3. the reconnect storm
        if args.storm:
            rec.phase = "storm"
            stopped_at = time.monotonic()
            daphne.stop()
            down_at = time.monotonic()  # no process listens: whoever is ready after this reconnected
            listening_at = daphne.start()
            cpu0 = daphne.cpu_seconds()
            main0, others0 = daphne.thread_cpu_seconds()
            while True:
                settled = [c for c in chargers if c.ready_at is not None and c.ready_at > down_at]
                if len(settled) == len(chargers) or time.monotonic() - listening_at > args.storm_timeout:
                    break
                await asyncio.sleep(0.1)
            # CPU over the time the storm was watched (the last charger's settling time is 0 when none settled).
            watched_s = time.monotonic() - listening_at
            storm_cpu_s = daphne.cpu_seconds() - cpu0
            main1, others1 = daphne.thread_cpu_seconds()
            last = max((c.ready_at for c in settled), default=listening_at)
            storm = rec.by_action.get("storm", {})
            result["storm"] = {
                "settled": len(settled), "restart_s": round(listening_at - stopped_at, 1),
                "settle_s_from_listening": round(last - listening_at, 1),
                "daphne_cpu_percent": round(100 * storm_cpu_s / max(watched_s, 0.1), 1),
                # What one charger's reconnect costs the process (the storm's CPU over the chargers settled).
                "daphne_cpu_s": round(storm_cpu_s, 1),
                "daphne_cpu_ms_per_charger": round(1000 * storm_cpu_s / max(len(settled), 1), 1),
                # Threads that ended during the storm are not counted here (the sum may fall short of the above).
                "event_loop_cpu_s": round(main1 - main0, 1), "other_threads_cpu_s": round(others1 - others0, 1),
                "boot": percentiles(storm.get("BootNotification", [])),
                "status": percentiles(storm.get("StatusNotification", [])),
                # When a share of the chargers was back, from listening: where the storm's time goes (the
                # tail after refusals, Pending intervals and the chargers' own back-off).
                "settled_by_s": settled_by(sorted(c.ready_at - listening_at for c in settled), len(chargers)),
            }
            print("storm:", json.dumps(result["storm"]), flush=True)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        daphne.stop()
    result["errors"] = rec.errors
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chargers", type=int, default=2000)
    parser.add_argument("--daphnes", type=int, default=1, help="daphne processes sharing the chargers")
    parser.add_argument("--connectors", type=int, default=2, help="as commissioned by setup_bench.py")
    parser.add_argument("--active", type=float, default=0.5, help="share of connectors in a transaction")
    parser.add_argument("--heartbeat", type=float, default=60)
    parser.add_argument("--meter-interval", type=float, default=15)
    parser.add_argument("--ramp-rate", type=float, default=100, help="new connections per second")
    parser.add_argument("--ramp-timeout", type=float, default=180)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--steady", type=float, default=180, help="seconds measured in steady state")
    parser.add_argument("--storm", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--storm-timeout", type=float, default=180)
    parser.add_argument("--timeout", type=float, default=30, help="seconds before a CALL counts as lost")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--retry", choices=("backoff", "fixed"), default="backoff",
                        help="after a failed or lost connection: exponential backoff with jitter, or ~1 s")
    parser.add_argument("--retry-cap", type=float, default=30, help="longest backoff, seconds")
    parser.add_argument("--profile", default="", help="run daphne under cProfile, write the profile here")
    parser.add_argument("--gc-log", default="", help="record daphne's garbage collections here (JSON lines, "
                        "bench/gc_daphne.py); not with --profile")
    parser.add_argument("--daphne-arg", action="append", default=[],
                        help="extra daphne argument, e.g. --daphne-arg=--websocket_connect_timeout=30")
    parser.add_argument("--tree", default=str(ROOT), help="the source tree daphne runs (e.g. a clean export)")
    parser.add_argument("--commit", default="", help="the commit --tree was exported from, for the record")
    args = parser.parse_args()
    # A benchmark runs the development settings against its own database; the settings
    # refuse to start without HOA_ENV, so say it here for manage.py and daphne below.
    os.environ.setdefault("HOA_ENV", "development")
    if "bench" not in os.environ.get("DATABASE_URL", ""):
        print("set DATABASE_URL to the benchmark database (see bench/setup_bench.py)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.chargers + 1024)), hard))
    started = datetime.now(UTC)
    result = asyncio.run(bench(args))
    result["started"] = started.isoformat(timespec="seconds")
    result["tree"] = args.tree
    result["commit"] = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.tree,
                                                     capture_output=True, text=True).stdout.strip()
    result["env"] = {k: os.environ[k] for k in ("DATABASE_CONN_MAX_AGE", "OCPP_HEARTBEAT_INTERVAL") if k in os.environ}
    path = OUT / f"ocpp_load-{args.chargers}-{started:%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
