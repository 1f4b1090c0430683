"""python manage.py simulate_building SLUG [--hours 24] [--speed 60] [--scenario FILE] [--seed S] [--report PATH.json]

A whole building in closed loop against a running platform (daphne + a Celery worker + beat): its chargers
simulated over real websockets, its site meter POSTing through the HTTP push the non-EV curve plus what the
simulated EVs draw, a share of its residents stating their cars' needs through the app's endpoint, everything
observed from the outside (apps/simulator/observer.py) and scored at the end (docs/simulator.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.commissioning.schema import CommissioningError
from apps.loadbalancing.allocator import DEFAULT_PARAMETERS
from apps.simulator import scenario as scenarios
from apps.simulator.building_load import DEFAULT_CURVE, schedule
from apps.simulator.client import ChargerRunner, SimClock, run_chargers
from apps.simulator.closedloop import Recorder
from apps.simulator.management.options import delay_range, pace_warning, scenario_text
from apps.simulator.model import ChargerSim
from apps.simulator.observer import Observer, ResidentsTalk
from apps.simulator.resident_app import ResidentApp
from apps.simulator.residents import Residents
from apps.simulator.selectors import SetupError, building, charger_passwords, wired


class Command(BaseCommand):
    help = "Run a building in closed loop: simulated chargers and EVs, its site meter pushed, the control scored."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None  # the run's, for request_stop
        self.stop_event: asyncio.Event | None = None

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

    def request_stop(self) -> None:
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)

    def handle(self, *args, slug, hours, speed, scenario, seed, report, url, meter_url, meter_every,
               commissioning_file, profile_delay, trace=None, chargers=None, needs_percent=None, **options):
        if speed <= 0 or hours <= 0 or meter_every <= 0:
            raise CommandError("--speed, --hours and --meter-every must be above 0")
        if needs_percent is not None and not 0 <= needs_percent <= 100:
            raise CommandError(f"--needs-percent must be 0 to 100, not {needs_percent}")
        delay = delay_range(profile_delay)
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
        paced = settings.LOADBALANCING_SIMULATION_SPEED
        warning = pace_warning(speed, paced, DEFAULT_PARAMETERS.need_period_s)
        if warning is not None:
            self.stderr.write(warning)
        if where.meter_token is None:
            self.stderr.write(f"{slug} has no HTTP-push site meter with a token in {path}: no readings are sent")
        visits = sum(len(v) for v in plan.evs.values())
        self.stdout.write(f"{slug}: {len(runners)} chargers, {visits} EV visits, {hours:g} h at {speed:g}x "
                          f"({hours * 3600 / speed:.0f} s), seed {seed}, {len(load.steps_starting())} load steps, "
                          f"{residents.speaking} residents to state their needs ({habits.state_needs_percent} %), "
                          f"resident timers paced {paced}x")
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
                                       "needs_percent": habits.state_needs_percent, "timers_paced": paced}
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
