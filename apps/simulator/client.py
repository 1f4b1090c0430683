"""The simulated chargers' network side: the ocpp package's client role over a websockets connection.

No Django here: the management command (or a test, or a benchmark) builds the
``ChargerSim`` models and the passwords, and runs ``run_chargers``.

Each charger behaves like a real one:
- it keeps simulating while it is offline (EVs come, charge and leave);
- transaction messages (StartTransaction, StopTransaction, MeterValues of a
  transaction) are kept and sent, in order, once it is back; the rest is
  dropped; offline it authorizes locally (LocalAuthorizeOffline);
- it reconnects with exponential backoff and jitter (the server may not be up
  yet, or restarting), then boots again: BootNotification, StatusNotification
  for every connector, and the kept messages;
- it answers the central system's calls from its model (RemoteStart/Stop,
  SetChargingProfile, ClearChargingProfile, ChangeConfiguration,
  GetConfiguration, TriggerMessage, Reset, ChangeAvailability, UnlockConnector...).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import websockets
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from apps.simulator.model import ChargerSim, Message

logger = logging.getLogger("apps.simulator")

SUBPROTOCOL = Subprotocol("ocpp1.6")
MAX_BACKOFF_S = 30.0
TRANSACTION_MESSAGE_ATTEMPTS = 3


class SimClock:
    """Simulated time: ``speed`` times faster than the wall clock, from ``start``.

    With ``catch_up`` the simulated time never passes the real time: a fast run
    starts in the past and slows to real time when it catches up, so that the
    chargers' timestamps stay plausible to the central system (it refuses
    charger times more than a few minutes ahead of its own clock).
    """

    def __init__(self, speed: float = 1.0, start: datetime | None = None, *, catch_up: bool = True,
                 wall: Callable[[], float] = time.time):
        self.speed = speed
        self.wall = wall
        self.wall_start = wall()
        self.start = start or datetime.fromtimestamp(self.wall_start, UTC)
        self.catch_up = catch_up

    def now(self) -> datetime:
        wall_now = self.wall()
        simulated = self.start + timedelta(seconds=(wall_now - self.wall_start) * self.speed)
        if self.catch_up:
            simulated = min(simulated, datetime.fromtimestamp(wall_now, UTC))
        return simulated

    def wall_at(self, moment: datetime) -> datetime:
        """The wall-clock time at which the simulated clock reads ``moment``: when the platform, which runs on
        the wall clock, sees it happen (an EV leaving at ``moment`` is gone then)."""
        at = datetime.fromtimestamp(self.wall_start, UTC) + (moment - self.start) / self.speed
        return max(at, moment) if self.catch_up else at

    def real_seconds(self, simulated_s: float) -> float:
        return simulated_s / self.speed


@dataclass
class Stats:
    sent: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    refused: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "action: error code"
    dropped: int = 0
    calls_received: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Stats) -> None:
        self.sent.update(other.sent)
        self.calls_received.update(other.calls_received)
        self.connections += other.connections
        self.refused += other.refused
        self.errors.update(other.errors)
        self.dropped += other.dropped


def basic_auth(charge_point_id: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()


class SimulatedChargePoint(ChargePoint):
    """Answers the central system's calls from the charger's model."""

    def __init__(self, runner: ChargerRunner, connection: ClientConnection):
        super().__init__(runner.sim.config.charge_point_id, connection, response_timeout=runner.response_timeout)
        self.runner = runner

    @property
    def sim(self) -> ChargerSim:
        return self.runner.sim

    def _seen(self, action: str, messages: list[Message] | None = None) -> None:
        self.runner.stats.calls_received[action] += 1
        if messages:
            self.runner.enqueue(messages)

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, connector_id: int | None = None, charging_profile: dict | None = None,
                        **_: Any):
        status, messages = self.sim.remote_start(id_tag, connector_id, charging_profile)
        self._seen("RemoteStartTransaction", messages)
        return call_result.RemoteStartTransaction(status=status)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, **_: Any):
        status, messages = self.sim.remote_stop(transaction_id)
        self._seen("RemoteStopTransaction", messages)
        return call_result.RemoteStopTransaction(status=status)

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **_: Any):
        received = time.time()
        status, messages = self.sim.set_charging_profile(connector_id, cs_charging_profiles)
        self._seen("SetChargingProfile", messages)
        if self.runner.on_profile is not None:
            self.runner.on_profile(self.runner, received, connector_id, cs_charging_profiles)
        return call_result.SetChargingProfile(status=status)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                  charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                  **_: Any):
        status, messages = self.sim.clear_charging_profile(
            profile_id=id, connector_id=connector_id, purpose=charging_profile_purpose, stack_level=stack_level)
        self._seen("ClearChargingProfile", messages)
        return call_result.ClearChargingProfile(status=status)

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, connector_id: int, duration: int, **_: Any):
        self._seen("GetCompositeSchedule")
        return call_result.GetCompositeSchedule(status="Rejected")

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any):
        status = self.sim.change_configuration(key, value)
        self._seen("ChangeConfiguration")
        return call_result.ChangeConfiguration(status=status)

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any):
        known, unknown = self.sim.get_configuration(key)
        self._seen("GetConfiguration")
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on(Action.trigger_message)
    def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        status, messages = self.sim.trigger(requested_message, connector_id)
        self._seen("TriggerMessage", messages)
        return call_result.TriggerMessage(status=status)

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any):
        self._seen("Reset", self.sim.reset(type))
        self.runner.reboot_requested = True
        self.runner.wake.set()
        return call_result.Reset(status="Accepted")

    @on(Action.change_availability)
    def on_change_availability(self, connector_id: int, type: str, **_: Any):
        status, messages = self.sim.change_availability(connector_id, type)
        self._seen("ChangeAvailability", messages)
        return call_result.ChangeAvailability(status=status)

    @on(Action.unlock_connector)
    def on_unlock_connector(self, connector_id: int, **_: Any):
        status, messages = self.sim.unlock_connector(connector_id)
        self._seen("UnlockConnector", messages)
        return call_result.UnlockConnector(status=status)

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any):
        self._seen("ClearCache")
        return call_result.ClearCache(status="Accepted")

    @on(Action.send_local_list)
    def on_send_local_list(self, list_version: int, update_type: str, **_: Any):
        self.sim.local_list_version = list_version
        self._seen("SendLocalList")
        return call_result.SendLocalList(status="Accepted")

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any):
        self._seen("GetLocalListVersion")
        return call_result.GetLocalListVersion(list_version=self.sim.local_list_version)

    @on(Action.reserve_now)
    def on_reserve_now(self, **_: Any):
        self._seen("ReserveNow")
        return call_result.ReserveNow(status="Rejected")

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, **_: Any):
        self._seen("CancelReservation")
        return call_result.CancelReservation(status="Rejected")

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any):
        self._seen("DataTransfer")
        return call_result.DataTransfer(status="UnknownVendorId")

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, **_: Any):
        self._seen("GetDiagnostics")
        return call_result.GetDiagnostics()

    @on(Action.update_firmware)
    def on_update_firmware(self, **_: Any):
        self._seen("UpdateFirmware")
        return call_result.UpdateFirmware()


class ChargerRunner:
    """One simulated charger: its model, its queue of messages, its connection (when it has one)."""

    def __init__(self, sim: ChargerSim, *, url: str, password: str, clock: SimClock, tick_s: float = 1.0,
                 response_timeout: float = 30, rng: random.Random | None = None):
        self.sim = sim
        self.url = url.rstrip("/") + "/" + urllib.parse.quote(sim.config.charge_point_id, safe="")
        self.password = password
        self.clock = clock
        self.tick_s = tick_s
        self.response_timeout = response_timeout
        self.rng = rng or random.Random(sim.config.charge_point_id)  # noqa: S311 - jitter, not a secret
        self.queue: deque[Message] = deque()
        self.attempts = 0
        self.connected = False
        self.reboot_requested = False
        self.wake = asyncio.Event()
        self.heartbeat_interval_s = 300
        self.stats = Stats()
        self.cp: SimulatedChargePoint | None = None
        # Called with (runner, wall-clock time received, connector id, the profile) for each SetChargingProfile.
        self.on_profile: Callable[[ChargerRunner, float, int, dict], None] | None = None

    @property
    def name(self) -> str:
        return self.sim.config.charge_point_id

    # --- the simulation keeps running, connected or not -----------------------------------

    def enqueue(self, messages: list[Message]) -> None:
        for message in messages:
            if self.connected or message.transactional:
                self.queue.append(message)
            elif message.action == "Authorize" and message.connector_id is not None:
                # Offline: authorize locally (LocalAuthorizeOffline) and start anyway.
                self.enqueue(self.sim.authorized(message.connector_id, "Accepted"))
            else:
                self.stats.dropped += 1
        if self.queue:
            self.wake.set()

    async def simulate(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.enqueue(self.sim.advance(self.clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_s)

    # --- the connection ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        simulation = asyncio.create_task(self.simulate(stop))
        backoff = 1.0
        try:
            while not stop.is_set():
                try:
                    async with connect(
                        self.url, subprotocols=[SUBPROTOCOL],
                        additional_headers={"Authorization": basic_auth(self.name, self.password)},
                        open_timeout=15, ping_interval=None, compression=None, proxy=None,
                    ) as ws:
                        backoff = 1.0
                        self.stats.connections += 1
                        await self._converse(ws, stop)
                except websockets.InvalidStatus as error:
                    self.stats.refused += 1
                    code = error.response.status_code
                    logger.warning("%s: the server refused the connection (HTTP %s); check its password in the "
                                   "commissioning file", self.name, code)
                    backoff = MAX_BACKOFF_S
                except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake,
                        websockets.InvalidURI) as error:
                    logger.info("%s: connection lost or impossible (%s); retrying", self.name,
                                error.__class__.__name__)
                finally:
                    self._offline()
                if stop.is_set():
                    break
                if self.reboot_requested:
                    self.reboot_requested = False
                    delay = 0.5  # a reboot takes a moment
                else:
                    delay = backoff * (0.5 + self.rng.random())
                    backoff = min(backoff * 2, MAX_BACKOFF_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            simulation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await simulation

    def _offline(self) -> None:
        self.connected = False
        self.cp = None
        kept = deque(m for m in self.queue if m.transactional)
        self.stats.dropped += len(self.queue) - len(kept)
        self.queue = kept

    async def _converse(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        cp = SimulatedChargePoint(self, ws)
        self.cp = cp
        reader = asyncio.create_task(cp.start())
        talker = asyncio.create_task(self._talk(cp, stop))
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({reader, talker, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in (reader, talker, stopper):
                task.cancel()
            await asyncio.gather(reader, talker, stopper, return_exceptions=True)

    async def _call(self, cp: SimulatedChargePoint, message: Message) -> Any:
        payload = getattr(call, message.action)(**self.sim.resolve(message))
        result = await cp.call(payload, suppress=False)
        self.stats.sent[message.action] += 1
        return result

    async def _boot(self, cp: SimulatedChargePoint, stop: asyncio.Event) -> None:
        while True:
            result = await self._call(cp, self.sim.boot_notification())
            if result.status == "Accepted":
                self.heartbeat_interval_s = max(int(result.interval), 1)
                return
            # Pending or Rejected: try again after the interval the central system gave.
            logger.info("%s: boot %s; retrying in %s s", self.name, result.status, result.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(self.clock.real_seconds(result.interval or 60), 1))
            if stop.is_set():
                return

    async def _talk(self, cp: SimulatedChargePoint, stop: asyncio.Event) -> None:
        await self._boot(cp, stop)
        self.connected = True
        # Fresh state first, then whatever was kept while offline.
        self.queue.extendleft(reversed(self.sim.all_statuses()))
        last_heartbeat = self.clock.now()
        while not stop.is_set():
            while self.queue:
                await self._send_head(cp)
            if self.reboot_requested:
                await cp._connection.close()
                return
            now = self.clock.now()
            if (now - last_heartbeat).total_seconds() >= self.heartbeat_interval_s:
                last_heartbeat = now
                await self._call(cp, Message("Heartbeat", {}))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.tick_s)

    async def _send_head(self, cp: SimulatedChargePoint) -> None:
        message = self.queue[0]
        try:
            result = await self._call(cp, message)
        except OCPPError as error:
            # A CALLERROR: the central system will not take it however often it is sent.
            logger.warning("%s: %s answered %s: %s", self.name, message.action, error.code, error.description)
            self.stats.errors[f"{message.action}: {error.code}"] += 1
            self.queue.popleft()
            return
        except TimeoutError:
            self.attempts += 1
            if message.transactional and self.attempts < TRANSACTION_MESSAGE_ATTEMPTS:
                return
            logger.warning("%s: %s got no answer; dropped", self.name, message.action)
            self.stats.dropped += 1
            self.queue.popleft()
            self.attempts = 0
            return
        self.queue.popleft()
        self.attempts = 0
        if message.action == "Authorize" and message.connector_id is not None:
            self.enqueue(self.sim.authorized(message.connector_id, result.id_tag_info["status"]))
        elif message.action == "StartTransaction" and message.tx_ref is not None:
            self.enqueue(self.sim.transaction_started(message.tx_ref, result.transaction_id,
                                                      result.id_tag_info["status"]))


async def run_chargers(runners: list[ChargerRunner], *, duration_s: float | None = None,
                       stop: asyncio.Event | None = None, report_every_s: float = 60,
                       report: Callable[[str], None] | None = None) -> Stats:
    """Run every charger until ``duration_s`` real seconds have passed or ``stop`` is set."""
    stop = stop or asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    started = time.monotonic()
    try:
        while not stop.is_set():
            left = None if duration_s is None else duration_s - (time.monotonic() - started)
            if left is not None and left <= 0:
                break
            wait = report_every_s if left is None else min(report_every_s, left)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if report is not None:
                report(summary(runners))
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    total = Stats()
    for runner in runners:
        total.merge(runner.stats)
    return total


def summary(runners: list[ChargerRunner]) -> str:
    connected = sum(1 for r in runners if r.connected)
    charging = sum(1 for r in runners for c in r.sim.connectors.values() if c.power_w > 0)
    power_w = sum(c.power_w for r in runners for c in r.sim.connectors.values())
    sent: Counter[str] = Counter()
    for r in runners:
        sent.update(r.stats.sent)
    return (f"{connected}/{len(runners)} chargers connected, {charging} connectors charging, {power_w} W; sent "
            + ", ".join(f"{k} {v}" for k, v in sorted(sent.items())))
