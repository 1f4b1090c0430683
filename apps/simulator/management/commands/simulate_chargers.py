"""python manage.py simulate_chargers --condominium maple-court [--speed 60 --duration 120 --scenario FILE]"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.commissioning.schema import CommissioningError
from apps.simulator import scenario as scenarios
from apps.simulator.building_load import DEFAULT_CURVE, schedule
from apps.simulator.client import ChargerRunner, SimClock, run_chargers
from apps.simulator.management.options import delay_range, scenario_text
from apps.simulator.modbus_meter import ModbusFeed
from apps.simulator.model import ChargerSim
from apps.simulator.observer import Observer, SiteMeterUnfed, site_meter_feed
from apps.simulator.selectors import SetupError, building, charger_passwords

# Without --duration a fast run starts this far back in simulated time, then continues in real time.
DEFAULT_HORIZON = timedelta(days=30)
CATCH_UP = timedelta(hours=12)


class Command(BaseCommand):
    help = "Connect a building's commissioned chargers as simulated OCPP 1.6J chargers with EVs (docs/simulator.md)."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.feeds: list[ModbusFeed] = []  # the Modbus site meters served, stopped when the run ends
        self.observers: list[Observer] = []  # one per building whose site meter is fed
        self.loop: asyncio.AbstractEventLoop | None = None  # the run's, for request_stop
        self.stop_event: asyncio.Event | None = None

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, action="append", dest="condominiums",
                            help="the building's slug, e.g. maple-court (repeatable: one process, several buildings)")
        parser.add_argument("--url", default="ws://127.0.0.1:8000/ocpp/", help="the OCPP endpoint, without the id")
        parser.add_argument("--commissioning-file", type=Path,
                            help="where the chargers' passwords are (default examples/<slug>.yaml)")
        parser.add_argument("--scenario", type=Path, help="a scenario file (examples/scenarios/)")
        parser.add_argument("--seed", type=int, help="random seed (default: the scenario's, else 1)")
        parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
        parser.add_argument("--duration", type=float, help="stop after this many real seconds (default: run on)")
        parser.add_argument("--charger", action="append", dest="chargers", help="only this charger (repeatable)")
        parser.add_argument("--tick", type=float, default=None, help="real seconds between simulation steps")
        parser.add_argument("--report-every", type=float, default=60, help="real seconds between progress lines")
        parser.add_argument("--push-site-meter", action="store_true",
                            help="also feed each building's site meter the scenario's non-EV curve plus what the "
                                 "simulated EVs draw: an HTTP-push meter (token from its commissioning file) by POST, "
                                 "a Modbus TCP meter on a loopback host by serving its registers on its port")
        parser.add_argument("--meter-url", default="http://127.0.0.1:8000", help="where the site meters POST")
        parser.add_argument("--profile-delay", default="1-5", metavar="LOW-HIGH",
                            help="simulated seconds a charger takes to follow a new charging profile (default 1-5; "
                                 "each profile's delay is fixed by the charger's id and the profile's number)")

    def handle(self, *args, condominiums, url, commissioning_file, scenario, seed, speed, duration, chargers, tick,
               report_every, profile_delay="1-5", push_site_meter=False, meter_url="http://127.0.0.1:8000",
               **options):
        if speed <= 0:
            raise CommandError("--speed must be above 0")
        profile_delay_s = delay_range(profile_delay)
        if commissioning_file is not None and len(condominiums) > 1:
            raise CommandError("--commissioning-file goes with one --condominium")
        logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at INFO
        buildings = []
        for slug in condominiums:
            path = commissioning_file or Path(settings.BASE_DIR) / "examples" / f"{slug}.yaml"
            try:
                setup = building(slug, chargers if len(condominiums) == 1 else None)
                buildings.append((setup, charger_passwords(path, setup.chargers)))
            except SetupError as error:
                raise CommandError(str(error)) from None
            except CommissioningError as error:
                raise CommandError(f"{path} cannot be read:\n{error}") from None

        spec = scenarios.Scenario()
        text, source = scenario_text(scenario)
        wall_start = datetime.now(UTC).replace(microsecond=0)
        horizon = timedelta(seconds=duration * speed) if duration is not None else DEFAULT_HORIZON
        # A fast run starts in the past so that the chargers' clocks never run ahead of the server's.
        back = horizon if duration is not None else CATCH_UP
        start = wall_start - back if speed > 1 else wall_start
        plans = []
        try:
            if scenario is not None:
                spec = scenarios.load(text, source=source)
            seed = seed if seed is not None else (spec.seed if spec.seed is not None else 1)
            everyone = [c for setup, _ in buildings for c in setup.chargers]
            scenarios.check_visits(spec, everyone, source=source, text=text)
            for setup, _ in buildings:
                ids = {c.charge_point_id.lower() for c in setup.chargers}
                own = spec.model_copy(update={"evs": tuple(v for v in spec.evs if v.charger.lower() in ids)})
                plans.append(scenarios.plan(own, setup.chargers, id_tags=setup.id_tags, start=start,
                                            horizon=horizon + back, seed=seed, source=source))
        except scenarios.ScenarioError as error:
            raise CommandError(f"the scenario was refused:\n{error}") from None

        clock = SimClock(speed, start, catch_up=speed > 1)
        tick = tick if tick is not None else max(0.05, min(1.0, 10 / speed))
        runners = []
        try:
            for (setup, passwords), plan in zip(buildings, plans, strict=True):
                first = len(runners)
                for config in setup.chargers:
                    config = replace(config, meter_value_interval_s=spec.meter_value_interval_s,
                                     profile_delay_s=profile_delay_s, schedule_speed=speed)
                    sim = ChargerSim(config, plan.evs[config.charge_point_id], start,
                                     registers_wh=plan.registers_wh[config.charge_point_id])
                    runners.append(ChargerRunner(sim, url=url, password=passwords[config.charge_point_id],
                                                 clock=clock, tick_s=tick))
                if push_site_meter:
                    self._site_meter(setup.slug, commissioning_file, runners[first:], spec, clock, start,
                                     horizon + back, seed, meter_url)
                visits = sum(len(v) for v in plan.evs.values())
                self.stdout.write(f"{setup.slug}: {len(setup.chargers)} chargers, {visits} EV visits planned, "
                                  f"seed {seed}, speed {speed:g}x, {url}")
            stats = asyncio.run(self._run(runners, duration, report_every))
        finally:
            for feed in self.feeds:  # the Modbus site meters served
                feed.stop()
            self.feeds.clear()
            self.observers.clear()
        self.stdout.write(
            f"done: {stats.connections} connections, {stats.refused} refused, "
            f"{sum(stats.errors.values())} errors answered{_listed(stats.errors)}, "
            f"{stats.dropped} offline messages dropped; sent "
            + ", ".join(f"{k} {v}" for k, v in sorted(stats.sent.items()))
        )

    def _site_meter(self, slug, commissioning_file, runners, spec, clock, start, horizon, seed, meter_url):
        path = commissioning_file or Path(settings.BASE_DIR) / "examples" / f"{slug}.yaml"
        curve = spec.building_load.curve() if spec.building_load is not None else DEFAULT_CURVE
        try:
            fed = site_meter_feed(slug, path, runners, schedule(curve, start, int(horizon.total_seconds()), seed),
                                  clock, meter_url)
        except SiteMeterUnfed as error:
            raise CommandError(str(error)) from None
        if fed.modbus is not None:
            self.feeds.append(fed.modbus)
        if fed.observer is not None:
            self.observers.append(fed.observer)
        self.stdout.write(fed.message)

    def request_stop(self) -> None:
        """Stop a run from another thread (tests)."""
        if self.loop is not None and self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)

    async def _run(self, runners, duration, report_every):
        stop = self.stop_event = asyncio.Event()
        loop = self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        watchers = [asyncio.create_task(o.run(stop)) for o in self.observers]
        try:
            return await run_chargers(runners, duration_s=duration, stop=stop, report_every_s=report_every,
                                      report=lambda line: self.stdout.write(line))
        finally:
            stop.set()
            await asyncio.gather(*watchers, return_exceptions=True)


def _listed(counts) -> str:
    return " (" + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())) + ")" if counts else ""
