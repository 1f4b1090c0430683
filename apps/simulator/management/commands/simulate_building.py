"""python manage.py simulate_building SLUG [--hours 24] [--speed 60] [--scenario FILE] [--seed S] [--report PATH.json]

A whole building in closed loop against a running platform (daphne + a Celery worker + beat): its chargers
simulated over real websockets, its site meter POSTing through the HTTP push the non-EV curve plus what the
simulated EVs draw, a share of its residents stating their cars' needs through the app's endpoint, everything
observed from the outside and scored at the end (docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import signal
import time
import urllib.parse
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from apps.commissioning.schema import CommissioningError
from apps.simulator import scenario as scenarios
from apps.simulator import services
from apps.simulator.building_load import DEFAULT_CURVE, Schedule, schedule
from apps.simulator.client import ChargerRunner, SimClock, run_chargers
from apps.simulator.closedloop import NeedsStated, Recorder, Wiring, headroom_w, node_loads
from apps.simulator.management.commands.simulate_chargers import _delay_range, scenario_text
from apps.simulator.model import ChargerSim
from apps.simulator.resident_app import NoCsrfToken, ResidentApp
from apps.simulator.residents import OpenSession, Residents, Statement
from apps.simulator.selectors import SetupError, Wired, building, charger_passwords, session_of_transaction, wired

if TYPE_CHECKING:
    from apps.simulator.modbus_meter import ModbusFeed

TENTH = Decimal("0.1")
logger = logging.getLogger("apps.simulator")


def _limit_of(profile: dict[str, Any]) -> tuple[Decimal, str] | None:
    schedule_ = profile.get("charging_schedule") or profile.get("chargingSchedule") or {}
    periods = schedule_.get("charging_schedule_period") or schedule_.get("chargingSchedulePeriod") or []
    if not periods:
        return None
    unit = schedule_.get("charging_rate_unit") or schedule_.get("chargingRateUnit") or "A"
    return Decimal(str(periods[0]["limit"])), unit


class Observer:
    """Samples the simulated building, feeds its site meter's readings (HTTP push, or the registers of a Modbus TCP
    meter served here), and feeds the recorder."""

    def __init__(self, runners: list[ChargerRunner], where: Wired, load: Schedule, clock: SimClock,
                 meter_url: str, meter_every_s: float, recorder: Recorder, *, record: bool = True,
                 modbus: ModbusFeed | None = None):
        self.record = record  # False: feed the site meter only (the demo), keep nothing
        self.modbus = modbus  # a Modbus TCP site meter served here: each reading goes into its registers
        self.runners, self.where, self.load, self.clock = runners, where, load, clock
        self.meter_every_s, self.recorder = meter_every_s, recorder
        parsed = urllib.parse.urlsplit(meter_url)
        self.meter_host, self.meter_port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.visits: dict[tuple[str, datetime], tuple[Any, int, bool]] = {}  # (gun, arrival) -> (Ev, energy, DC)
        self.posted = 0
        self.post_errors: dict[str, int] = {}
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.meter_node = where.meter_node or (where.nodes[0].key if where.nodes else None)
        self.profiled: set[str] = set()  # guns that received a profile
        self.warm_until: datetime | None = None
        self.settle_s = 5
        self.trace: Any = None  # a text file: one JSON line per sample that differs from the one before
        self._traced: Any = None
        for runner in runners:
            runner.on_profile = self.profile

    def profile(self, runner: ChargerRunner, received: float, connector_id: int, profile: dict[str, Any]) -> None:
        limit = _limit_of(profile)
        if limit is None:
            return
        amps, _unit = limit
        if not self.record:
            return
        numbers = [connector_id] if connector_id else list(runner.sim.connectors)
        for n in numbers:
            key = f"{runner.name}#{n}"
            if self.trace is not None:
                self.trace.write(json.dumps({"t": self.clock.now().isoformat(), "profile": key,
                                             "limit": str(amps), "unit": _unit}) + "\n")
            self.profiled.add(key)
            self.recorder.profile(datetime.fromtimestamp(received, UTC), key, amps)
            c = runner.sim.connectors.get(n)
            tx = c.tx.transaction_id if c is not None and c.tx is not None else None
            if tx is not None:
                self.recorder.limit(self.clock.now(), f"{key}:{tx}", amps)

    def _sample(self) -> tuple[datetime, dict[str, tuple[Decimal, Decimal, Decimal]]]:
        now = self.clock.now()
        guns = []
        ev_w = Decimal(0)
        want_w = Decimal(0)
        traced: dict[str, list[str]] = {}
        for runner in self.runners:
            for n, c in runner.sim.connectors.items():
                key = f"{runner.name}#{n}"
                wiring = self.where.wiring.get(key)
                if not isinstance(wiring, Wiring):
                    continue
                amps = c.current_a if c.power_w else Decimal(0)
                guns.append((wiring, amps, c.phases_used))
                if self.trace is not None and c.ev is not None:
                    traced[key] = [str(c.offered_a), str(amps)]
                ev_w += c.power_w
                if c.ev is not None:
                    self.visits[(key, c.ev.arrival)] = (c.ev, c.ev_energy_wh, c.config.dc)
                    if c.ev_energy_wh < c.ev.battery_wh:
                        # What the EV could take now: its maximum, less near full (the model's taper).
                        want_w += (c.ev.max_dc_power_w if c.config.dc
                                   else c.ev.max_current_a * min(c.ev.phases, c.config.phases) * c.config.voltage_v
                                   ) * c.taper_permille // 1000
        non_ev = {self.meter_node: self.load.load_at(now)} if self.meter_node else {}
        loads = node_loads(self.where.nodes, guns, non_ev)
        if self.trace is not None:
            state = {"loads": {k: [str(a) for a in v] for k, v in loads.items()}, "guns": traced}
            if state != self._traced:
                self._traced = state
                self.trace.write(json.dumps({"t": now.isoformat()} | state) + "\n")
        # A fresh charger has no TxDefaultProfile: its EVs draw their maximum until the platform's first profile
        # (and the EV's delay to follow it). Scoring starts once every plugged gun has had one, that delay later.
        if self.warm_until is None:
            plugged = {f"{r.name}#{n}" for r in self.runners for n, c in r.sim.connectors.items() if c.ev}
            if plugged and plugged <= self.profiled:
                self.warm_until = now + timedelta(seconds=self.settle_s)
        warming = self.warm_until is None or now < self.warm_until
        if self.record and not warming and (self.last is None or now > self.last):
            for node in self.where.nodes:
                self.recorder.load(now, node.key, loads[node.key])
            if self.last is not None:
                seconds = Decimal((now - self.last) // timedelta(milliseconds=1)) / 1000
                self.recorder.energy(seconds, min(headroom_w(self.where.nodes, non_ev), want_w), ev_w)
            self.first = self.first or now
            self.last = now
        return now, loads

    def _post(self, amps: tuple[Decimal, Decimal, Decimal]) -> int:
        body = json.dumps({"timestamp": datetime.now(UTC).isoformat(),
                           "current_a": [float(a.quantize(TENTH)) for a in amps]})
        conn = http.client.HTTPConnection(self.meter_host, self.meter_port, timeout=5)
        try:
            conn.request("POST", f"/api/v1/site-meters/{self.where.meter_key}/readings", body=body, headers={
                "Host": self.where.host, "Authorization": f"Bearer {self.where.meter_token}",
                "Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    async def _push(self, amps: tuple[Decimal, Decimal, Decimal]) -> None:
        try:
            status = await asyncio.to_thread(self._post, amps)
        except OSError as error:
            status = 0
            self.post_errors[type(error).__name__] = self.post_errors.get(type(error).__name__, 0) + 1
        if status == 202:
            self.posted += 1
        elif status:
            self.post_errors[str(status)] = self.post_errors.get(str(status), 0) + 1

    async def run(self, stop: asyncio.Event) -> None:
        tick = max(0.05, min(1.0, self.meter_every_s / self.clock.speed))
        last_post: datetime | None = None
        limit_node = next((n for n in self.where.nodes if n.key == self.meter_node), None)
        while not stop.is_set():
            now, loads = self._sample()
            push = self.where.meter_token is not None
            feed = (push or self.modbus is not None) and self.meter_node is not None and limit_node is not None
            if feed and (last_post is None or (now - last_post).total_seconds() >= self.meter_every_s):
                last_post = now
                total = loads[self.meter_node]  # type: ignore[index]
                if self.record:
                    self.recorder.reading(datetime.now(UTC), total, limit_node.limit_a)  # type: ignore[union-attr]
                if self.modbus is not None:
                    self.modbus.show(total)
                if push:
                    await self._push(total)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    def sessions(self, end: datetime) -> None:
        for (key, arrival), (ev, energy, dc) in self.visits.items():
            stay_s = Decimal(max(0, int((min(ev.departure, end) - max(arrival, self.first or arrival))
                                        .total_seconds())))
            voltage = 230
            max_w = Decimal(ev.max_dc_power_w) if dc else ev.max_current_a * ev.phases * voltage
            demand = min(ev.battery_wh - ev.energy_wh, int(max_w * stay_s / 3600))
            self.recorder.session(f"{key}@{arrival.isoformat()}", max(0, demand), max(0, energy - ev.energy_wh))


class ResidentsTalk:
    """The residents who use the app: each states their car's needs through the platform's endpoint, signed in
    as the resident whose card started the session, when apps/simulator/residents.py says so. Every failure is
    counted in the recorder, none stops the run."""

    def __init__(self, runners: list[ChargerRunner], residents: Residents, clock: SimClock, app: ResidentApp,
                 schema_name: str, recorder: Recorder):
        self.runners, self.residents, self.clock, self.app = runners, residents, clock, app
        self.schema_name, self.recorder = schema_name, recorder
        self.phones: dict[int, str] = {}  # user id -> the key of their phone's session

    def open_sessions(self) -> list[OpenSession]:
        return [OpenSession(runner.name, c.ev, datetime.fromtimestamp(c.tx.start_t, UTC), c.tx.transaction_id)
                for runner in self.runners for c in runner.sim.connectors.values()
                if c.ev is not None and c.tx is not None and c.tx.transaction_id is not None]

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                for statement in self.residents.due(self.open_sessions(), self.clock.now()):
                    try:
                        problem = await self.say(statement)
                    except Exception as error:  # a resident's trouble never ends the run
                        logger.exception("needs of %s", statement.session.gun)
                        problem = type(error).__name__
                    if problem is not None:
                        self.recorder.needs_failed(problem)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
        finally:
            with contextlib.suppress(DatabaseError):
                await _database(services.resident_phones_logout, session_keys=list(self.phones.values()))
            await _database(connections.close_all)

    async def say(self, statement: Statement) -> str | None:
        """Say one resident's needs; None when the platform took them, else what went wrong."""
        session, needs = statement.session, statement.needs
        try:
            owner = await _database(session_of_transaction, self.schema_name, session.charge_point_id,
                                    session.transaction_id)
            if owner is None:
                return "no such session on the platform"
            if owner.user_id is None:
                return "the card is not an active resident's"
            key = self.phones.get(owner.user_id)
            if key is None:
                key = self.phones[owner.user_id] = await _database(services.resident_phone_login,
                                                                   user_id=owner.user_id)
        except DatabaseError as error:
            return f"database: {type(error).__name__}"
        # The platform runs on the wall clock: the departure is when the simulated car will actually be gone.
        ready_by = self.clock.wall_at(needs.ready_by).replace(microsecond=0)
        try:
            status = await asyncio.to_thread(self.app.say_needs, key, owner.session_pk, energy_wh=needs.energy_wh,
                                             ready_by=ready_by)
        except NoCsrfToken:
            return "no CSRF token"
        except OSError as error:
            return type(error).__name__
        if status != 200:
            return f"HTTP {status}"
        self.recorder.needs_stated(NeedsStated(f"{session.gun}@{session.ev.arrival.isoformat()}", owner.session_pk,
                                               needs.energy_wh, ready_by))
        return None


async def _database(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """A database call from the event loop: the ORM is synchronous, so on the one thread kept for it."""
    return await sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)


class Command(BaseCommand):
    help = "Run a building in closed loop: simulated chargers and EVs, its site meter pushed, the control scored."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the building's slug, e.g. maple-court")
        parser.add_argument("--hours", type=float, default=24, help="simulated hours (default 24)")
        parser.add_argument("--speed", type=float, default=60, help="simulated seconds per real second")
        parser.add_argument("--scenario", type=Path, help="a scenario file (docs/simulator.md)")
        parser.add_argument("--seed", type=int, help="random seed (default: the scenario's, else 1)")
        parser.add_argument("--report", type=Path, help="write the report as JSON here")
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ocpp/", help="the OCPP endpoint, without the id")
        parser.add_argument("--meter-url", default="http://127.0.0.1:8000",
                            help="the platform's HTTP address: the site meter POSTs and the residents' app talks "
                                 "there (the building's host is sent as Host)")
        parser.add_argument("--needs-percent", type=int, metavar="PERCENT",
                            help="share of the EVs whose resident states its needs (0-100; default: the "
                                 "scenario's residents.state_needs_percent, 70)")
        parser.add_argument("--meter-every", type=float, default=5, help="simulated seconds between readings")
        parser.add_argument("--commissioning-file", type=Path,
                            help="the chargers' passwords and the meter's token (default examples/<slug>.yaml)")
        parser.add_argument("--charger", action="append", dest="chargers",
                            help="simulate only this charger (repeatable; the others are left as they are)")
        parser.add_argument("--profile-delay", default="1-5", metavar="LOW-HIGH",
                            help="simulated seconds an EV takes to follow a new limit (default 1-5)")
        parser.add_argument("--trace", type=Path,
                            help="write every change of the nodes' loads and of each gun's offered and drawn "
                                 "current here, one JSON line each (to see what an excursion was made of)")

    loop: asyncio.AbstractEventLoop | None = None
    stop_event: asyncio.Event | None = None

    def request_stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)

    def handle(self, *args, slug, hours, speed, scenario, seed, report, url, meter_url, meter_every,
               commissioning_file, profile_delay, trace=None, chargers=None, needs_percent=None, **options):
        if speed <= 0 or hours <= 0 or meter_every <= 0:
            raise CommandError("--speed, --hours and --meter-every must be above 0")
        if needs_percent is not None and not 0 <= needs_percent <= 100:
            raise CommandError(f"--needs-percent must be 0 to 100, not {needs_percent}")
        delay = _delay_range(profile_delay)
        logging.getLogger("ocpp").setLevel(logging.WARNING)
        path = commissioning_file or Path(settings.BASE_DIR) / "examples" / f"{slug}.yaml"
        try:
            setup = building(slug, chargers)
            passwords = charger_passwords(path, setup.chargers)
            where = wired(slug, path)
        except SetupError as error:
            raise CommandError(str(error)) from None
        except (CommissioningError, OSError) as error:
            raise CommandError(f"{path} cannot be read:\n{error}") from None
        text, source = scenario_text(scenario)
        horizon = timedelta(hours=hours)
        wall_start = datetime.now(UTC).replace(microsecond=0)
        start = wall_start - horizon if speed > 1 else wall_start  # never ahead of the server's clock
        try:
            spec = scenarios.load(text, source=source) if scenario is not None else scenarios.Scenario()
            seed = seed if seed is not None else (spec.seed if spec.seed is not None else 1)
            scenarios.check_visits(spec, setup.chargers, source=source, text=text)
            plan = scenarios.plan(spec, setup.chargers, id_tags=setup.id_tags, start=start, horizon=horizon,
                                  seed=seed, source=source)
        except scenarios.ScenarioError as error:
            raise CommandError(f"the scenario was refused:\n{error}") from None
        curve = spec.building_load.curve() if spec.building_load is not None else DEFAULT_CURVE
        load = schedule(curve, start, int(horizon.total_seconds()), seed)
        clock = SimClock(speed, start, catch_up=speed > 1)
        tick = max(0.05, min(1.0, 10 / speed))
        runners = []
        for config in setup.chargers:
            config = replace(config, meter_value_interval_s=spec.meter_value_interval_s, profile_delay_s=delay,
                             schedule_speed=speed)
            sim = ChargerSim(config, plan.evs[config.charge_point_id], start,
                             registers_wh=plan.registers_wh[config.charge_point_id])
            runners.append(ChargerRunner(sim, url=url, password=passwords[config.charge_point_id], clock=clock,
                                         tick_s=tick))
        recorder = Recorder(where.nodes)
        observer = Observer(runners, where, load, clock, meter_url, meter_every, recorder)
        observer.settle_s = delay[1] + 1
        habits = spec.residents.habits(needs_percent)
        residents = Residents(plan.evs, seed=seed, habits=habits)
        app = ResidentApp(meter_url, where.host, session_cookie=settings.SESSION_COOKIE_NAME,
                          csrf_cookie=settings.CSRF_COOKIE_NAME)
        talk = ResidentsTalk(runners, residents, clock, app, setup.schema_name, recorder)
        if where.meter_token is None:
            self.stderr.write(f"{slug} has no HTTP-push site meter with a token in {path}: no readings are sent")
        visits = sum(len(v) for v in plan.evs.values())
        self.stdout.write(f"{slug}: {len(runners)} chargers, {visits} EV visits, {hours:g} h at {speed:g}x "
                          f"({hours * 3600 / speed:.0f} s), seed {seed}, {len(load.steps_starting())} load steps, "
                          f"{residents.speaking} residents to state their needs ({habits.state_needs_percent} %)")
        with contextlib.ExitStack() as files:
            if trace is not None:
                try:
                    observer.trace = files.enter_context(trace.open("w", encoding="utf-8"))
                except OSError as error:
                    raise CommandError(f"cannot write the trace {trace}: {error.strerror}") from None
            asyncio.run(self._run(runners, observer, talk, hours * 3600 / speed))
        end = observer.last or start
        observer.sessions(end)
        minutes = Decimal(int((end - (observer.first or end)).total_seconds())) / 60
        guns = sum(len(r.sim.connectors) for r in runners)
        result = recorder.report(end, datetime.now(UTC), guns, minutes)
        self.stdout.write(f"site meter: {observer.posted} readings accepted"
                          + (f", problems {observer.post_errors}" if observer.post_errors else ""))
        self.stdout.write(f"residents: {len(result.needs_stated)} stated their needs, {result.needs_failed} calls "
                          "failed" + (f" {dict(result.needs_problems)}" if result.needs_problems else ""))
        self.stdout.write(result.table())
        if report is not None:
            data = result.as_json() | {"building": slug, "hours": hours, "speed": speed, "seed": seed,
                                       "readings_accepted": observer.posted, "reading_problems": observer.post_errors,
                                       "needs_percent": habits.state_needs_percent}
            report.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
            self.stdout.write(f"report written to {report}")

    async def _run(self, runners, observer, talk, duration_s):
        stop = self.stop_event = asyncio.Event()
        loop = self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(observer.run(stop))
        speaker = asyncio.create_task(talk.run(stop))
        started = time.monotonic()
        try:
            await run_chargers(runners, duration_s=duration_s, stop=stop, report_every_s=max(10.0, duration_s / 10),
                               report=lambda line: self.stdout.write(f"[{time.monotonic() - started:.0f} s] {line}"))
        finally:
            stop.set()
            await asyncio.gather(watcher, speaker, return_exceptions=True)
