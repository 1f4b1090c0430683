"""A simulated building observed from the outside while it runs against the platform: its site meter fed (HTTP
push, or the registers of a Modbus TCP meter served here), the profiles its chargers receive recorded, and a share
of its residents stating their cars' needs through the app. Used by ``simulate_building`` (scored) and
``simulate_chargers --push-site-meter`` (the demo: the meter fed, nothing kept)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

from apps.commissioning.schema import CommissioningError
from apps.simulator import services
from apps.simulator.closedloop import NeedsStated, Recorder, Wiring, deliverable_w, node_loads
from apps.simulator.meter_registers import is_loopback
from apps.simulator.modbus_meter import ModbusFeed
from apps.simulator.resident_app import NoCsrfToken, ResidentApp
from apps.simulator.residents import OpenSession, Residents, Statement
from apps.simulator.selectors import SetupError, Wired, session_of_transaction, wired

if TYPE_CHECKING:
    from apps.simulator.building_load import Schedule
    from apps.simulator.client import ChargerRunner, SimClock

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
        wants = []
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
                        # What the EV could take now: its maximum, less near full (the model's taper), per phase.
                        if c.config.dc:
                            wants.append((wiring, Decimal(c.ev.max_dc_power_w * c.taper_permille // 1000)
                                          / (3 * c.config.voltage_v), 3))
                        else:
                            wants.append((wiring, c.ev.max_current_a * c.taper_permille / 1000,
                                          min(c.ev.phases, c.config.phases)))
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
                self.recorder.energy(seconds, deliverable_w(self.where.nodes, wants, non_ev), ev_w)
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


class SiteMeterUnfed(Exception):
    """The building's site meter cannot be fed (the message says why)."""


@dataclass(frozen=True)
class SiteMeterFeed:
    """A building's site meter as the demo feeds it: the observer that posts or serves its readings (None: the
    building has none that can be fed, ``message`` says so), the Modbus meter served (stop it when done)."""

    observer: Observer | None
    modbus: ModbusFeed | None
    message: str


def site_meter_feed(slug: str, path: Path, runners: list[ChargerRunner], load: Schedule, clock: SimClock,
                    meter_url: str) -> SiteMeterFeed:
    """Feed the building's site meter every 5 simulated s with ``load`` plus what its simulated EVs draw: an
    HTTP-push meter (token from the commissioning file at ``path``) by POST to ``meter_url``, a Modbus TCP meter
    on a loopback host by serving its registers on its port. Records nothing."""
    try:
        where = wired(slug, path)
    except (SetupError, CommissioningError, OSError) as error:
        raise SiteMeterUnfed(f"{slug}: the site meter cannot be fed: {error}") from None
    modbus = where.meter_modbus
    feed = None
    if modbus is not None:
        if not is_loopback(modbus.host):
            return SiteMeterFeed(None, None, f"{slug}: site meter {where.meter_key} is read over Modbus TCP at "
                                             f"{modbus.address}, not a loopback address: none fed")
        try:
            feed = ModbusFeed(modbus).start()
        except OSError as error:
            raise SiteMeterUnfed(f"{slug}: the site meter {where.meter_key} cannot be served: {error}") from None
        how = f"over Modbus TCP at {modbus.address} (unit {modbus.unit_id}, profile {modbus.profile})"
    elif where.meter_token is None:
        return SiteMeterFeed(None, None, f"{slug}: no HTTP-push site meter with a token in {path} and no Modbus "
                                         "site meter: none fed")
    else:
        how = f"({meter_url})"
    observer = Observer(runners, where, load, clock, meter_url, 5, Recorder(where.nodes), record=False, modbus=feed)
    return SiteMeterFeed(observer, feed, f"{slug}: site meter {where.meter_key} fed every 5 simulated s {how}")
