"""A simulated OCPP 1.6 charger with EVs plugged into it. Pure: no Django, no I/O, no clock of its own.

The caller owns time: ``advance(now)`` moves the simulation to ``now`` and
returns the messages the charger would send meanwhile (as ocpp-package payload
fields, snake_case). Answers from the central system and its commands come
back through the other methods (``authorized``, ``transaction_started``,
``remote_stop``, ``set_charging_profile``...). Given the same EVs, the same
start and the same sequence of calls, the output is the same.

Energy is integer: every connector has a Wh register and keeps the leftover
watt-seconds, so nothing is ever rounded away. Currents are Decimal amperes
with one decimal. Power is recomputed at most every ``STEP_S`` seconds of
simulated time, on a grid aligned to the epoch, so that the result does not
depend on how often the caller calls ``advance`` (only external events, such as
a new charging limit, take effect between grid points).
"""

from __future__ import annotations

import contextlib
import copy
import zlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from apps.simulator.profiles import TX, Limit, Profile, ProfileBook, ProfileRejected

STEP_S = 10
WS_PER_WH = 3600
TENTH = Decimal("0.1")
TAPER_FROM_PERMILLE = 800  # an EV draws full current up to 80 % state of charge...
TAPER_END_PERMILLE = 100  # ...then less and less, down to 10 % of it when full
DEFAULT_MEASURANDS = "Energy.Active.Import.Register"
SUPPORTED_MEASURANDS = (
    "Energy.Active.Import.Register", "Current.Import", "Power.Active.Import", "Current.Offered", "Voltage", "SoC",
)
TRANSACTIONAL = ("StartTransaction", "StopTransaction")

AVAILABLE = "Available"
PREPARING = "Preparing"
CHARGING = "Charging"
SUSPENDED_EV = "SuspendedEV"
SUSPENDED_EVSE = "SuspendedEVSE"
FINISHING = "Finishing"
UNAVAILABLE = "Unavailable"


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("the simulation needs timezone-aware datetimes")
    return int(moment.timestamp())


@dataclass(frozen=True)
class ConnectorConfig:
    connector_id: int
    phases: int = 1
    max_current_a: Decimal | None = Decimal("32")
    min_current_a: Decimal = Decimal("6")
    dc: bool = False
    max_power_w: int | None = None
    min_power_w: int | None = None
    voltage_v: int = 230


@dataclass(frozen=True)
class ChargerConfig:
    charge_point_id: str
    connectors: tuple[ConnectorConfig, ...]
    vendor: str = "HOA Charging"
    model: str = "Simulated Wallbox"
    firmware_version: str = "sim-1.0"
    meter_value_interval_s: int = 60
    measurands: str = DEFAULT_MEASURANDS
    # Seconds between accepting a charging profile and following it (lowest, highest). Real chargers answer
    # at once and need a moment to change what they offer the EV; the delay of each profile is drawn from
    # this range by a hash of the charger's id and the profile's number, so a run is repeatable.
    profile_delay_s: tuple[int, int] = (0, 0)
    # The simulation's speed: schedules count their periods in real seconds (profiles.Profile.period_at).
    schedule_speed: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule_speed <= 0:
            raise ValueError(f"{self.charge_point_id}: schedule_speed must be above 0")
        low, high = self.profile_delay_s
        if not 0 <= low <= high:
            raise ValueError(f"{self.charge_point_id}: profile_delay_s must be (low, high) with 0 <= low <= high")

    @property
    def serial_number(self) -> str:
        return f"SIM-{self.charge_point_id}"[:25]


@dataclass(frozen=True)
class Ev:
    """One visit of an EV: it plugs in at ``arrival`` and leaves at ``departure``."""

    connector_id: int
    arrival: datetime
    departure: datetime
    battery_wh: int
    energy_wh: int  # in the battery when it arrives
    max_current_a: Decimal  # per phase, what its on-board charger takes
    phases: int
    id_tag: str
    max_dc_power_w: int = 50_000
    name: str = ""

    def __post_init__(self) -> None:
        if self.departure <= self.arrival:
            raise ValueError("an EV must leave after it arrives")
        if not 0 <= self.energy_wh <= self.battery_wh or self.battery_wh <= 0:
            raise ValueError("the battery's energy must be between 0 and its size")
        if self.phases not in (1, 3):
            raise ValueError("an EV charges on 1 or 3 phases")


@dataclass(frozen=True)
class Message:
    """A CALL the charger sends. ``tx_ref`` ties transaction messages to their StartTransaction."""

    action: str
    payload: dict[str, Any]
    tx_ref: int | None = None
    connector_id: int | None = None  # Authorize: whose answer it is

    @property
    def transactional(self) -> bool:
        """Kept and sent later when the charger is offline (OCPP 1.6, 4.7); the rest is dropped."""
        return self.action in TRANSACTIONAL or (self.action == "MeterValues" and self.tx_ref is not None)


@dataclass
class Transaction:
    ref: int
    id_tag: str
    start_t: int
    meter_start_wh: int
    transaction_id: int | None = None


@dataclass
class ConnectorState:
    config: ConnectorConfig
    register_wh: int
    status: str = AVAILABLE
    operative: bool = True
    ev: Ev | None = None
    ev_energy_wh: int = 0
    leftover_ws: int = 0  # watt-seconds not yet a whole Wh
    tx: Transaction | None = None
    awaiting_authorization: bool = False
    finished: bool = False  # a transaction ended while the EV is still plugged in
    power_w: int = 0
    current_a: Decimal = Decimal("0")
    offered_a: Decimal = Decimal("0")
    phases_used: int = 1
    power_cell: int | None = None  # the STEP_S grid cell the power was computed for
    next_sample_t: int | None = None
    queue: list[Ev] = field(default_factory=list)

    @property
    def soc_permille(self) -> int:
        if self.ev is None:
            return 0
        return self.ev_energy_wh * 1000 // self.ev.battery_wh

    @property
    def taper_permille(self) -> int:
        """How much of its maximum the EV takes at its state of charge: all of it up to 80 %, then less."""
        soc = self.soc_permille
        if soc < TAPER_FROM_PERMILLE:
            return 1000
        return 1000 - (soc - TAPER_FROM_PERMILLE) * (1000 - TAPER_END_PERMILLE) // (1000 - TAPER_FROM_PERMILLE)


class ChargerSim:
    def __init__(self, config: ChargerConfig, evs: list[Ev], start: datetime,
                 registers_wh: dict[int, int] | None = None):
        self.config = config
        self.t = epoch(start)
        registers_wh = registers_wh or {}
        self.connectors: dict[int, ConnectorState] = {
            c.connector_id: ConnectorState(c, register_wh=registers_wh.get(c.connector_id, 0))
            for c in config.connectors
        }
        for ev in sorted(evs, key=lambda e: (e.arrival, e.connector_id)):
            if ev.connector_id not in self.connectors:
                raise ValueError(f"{config.charge_point_id} has no connector {ev.connector_id}")
            self.connectors[ev.connector_id].queue.append(ev)
        self.profiles = ProfileBook(speed=config.schedule_speed)
        self.configuration: dict[str, tuple[str, bool]] = {
            "HeartbeatInterval": ("300", False),
            "MeterValueSampleInterval": (str(config.meter_value_interval_s), False),
            "MeterValuesSampledData": (config.measurands, False),
            "StopTxnSampledData": ("Energy.Active.Import.Register", False),
            "NumberOfConnectors": (str(len(config.connectors)), True),
            "ChargeProfileMaxStackLevel": ("8", True),
            "ChargingScheduleAllowedChargingRateUnit": ("Current,Power", True),
            "ChargingScheduleMaxPeriods": ("24", True),
            "MaxChargingProfilesInstalled": ("10", True),
            "SupportedFeatureProfiles": ("Core,SmartCharging,RemoteTrigger,LocalAuthListManagement", True),
            "AuthorizeRemoteTxRequests": ("false", False),
            "LocalAuthorizeOffline": ("true", False),
            "LocalPreAuthorize": ("false", False),
            "StopTransactionOnInvalidId": ("true", False),
            "ConnectionTimeOut": ("60", False),
            "LocalAuthListEnabled": ("true", False),
            "LocalAuthListMaxLength": ("100", True),
            "SendLocalListMaxLength": ("100", True),
            "ConnectorPhaseRotation": ("0.RST", False),
        }
        self.local_list_version = 0
        # Profiles accepted and not yet followed: (time to apply, order, connector, profile, transactionId).
        self.pending_profiles: list[tuple[int, int, int, Profile, int | None]] = []
        self._profiles_received = 0
        self._next_ref = 1
        self.transaction_ids: dict[int, int] = {}  # tx_ref -> transactionId given by the central system

    # --- time ----------------------------------------------------------------------------

    def advance(self, now: datetime) -> list[Message]:
        """Move to ``now`` (whole seconds) and return what the charger sent meanwhile, oldest first."""
        target = epoch(now)
        out: list[Message] = []
        while True:
            self._events(out)
            if self.t >= target:
                return out
            following = min(target, (self.t // STEP_S + 1) * STEP_S, *self._event_times())
            self._integrate(self.t, following, out)
            self.t = following

    def _event_times(self) -> list[int]:
        times = []
        for c in self.connectors.values():
            if c.ev is not None:
                times.append(epoch(c.ev.departure))
            elif c.queue:
                times.append(epoch(c.queue[0].arrival))
            if c.next_sample_t is not None:
                times.append(c.next_sample_t)
        times += [apply_t for apply_t, *_ in self.pending_profiles]
        return [t for t in times if t > self.t]

    def _events(self, out: list[Message]) -> None:
        due = [p for p in self.pending_profiles if p[0] <= self.t]
        if due:
            self.pending_profiles = [p for p in self.pending_profiles if p[0] > self.t]
            for _, _, connector_id, profile, transaction_id in sorted(due, key=lambda p: (p[0], p[1])):
                tx = self.connectors[connector_id].tx if connector_id else None
                if profile.purpose == TX and (tx is None or tx.transaction_id != transaction_id):
                    continue  # the transaction ended before the profile took effect
                with contextlib.suppress(ProfileRejected):
                    self.profiles.add(connector_id, profile, datetime.fromtimestamp(self.t, UTC), transaction_id)
            out += self._refresh_all()
        for c in self.connectors.values():
            if c.ev is not None and epoch(c.ev.departure) <= self.t:
                self._unplug(c, out)
            while c.ev is None and c.queue and epoch(c.queue[0].arrival) <= self.t:
                ev = c.queue.pop(0)
                if epoch(ev.departure) > self.t:
                    self._plug(c, ev, out)
            if c.next_sample_t is not None and c.next_sample_t <= self.t:
                out.append(self.meter_values(c.config.connector_id))
                interval = self.meter_value_interval_s
                c.next_sample_t = self.t + interval if interval > 0 and c.tx else None

    def _integrate(self, t0: int, t1: int, out: list[Message]) -> None:
        for c in self.connectors.values():
            if c.power_cell != t0 // STEP_S:
                self._compute_power(c, t0, out)
            if c.power_w:
                c.leftover_ws += c.power_w * (t1 - t0)
                wh, c.leftover_ws = divmod(c.leftover_ws, WS_PER_WH)
                c.register_wh += wh
                if c.ev is not None:
                    c.ev_energy_wh = min(c.ev.battery_wh, c.ev_energy_wh + wh)

    # --- physics -------------------------------------------------------------------------

    @property
    def meter_value_interval_s(self) -> int:
        return int(self.configuration["MeterValueSampleInterval"][0])

    def limit(self, connector_id: int, phases: int) -> Limit:
        c = self.connectors[connector_id]
        tx = c.tx
        return self.profiles.limit(
            connector_id, datetime.fromtimestamp(self.t, UTC),
            tx_start=datetime.fromtimestamp(tx.start_t, UTC) if tx else None,
            transaction_id=tx.transaction_id if tx else None,
            voltage_v=c.config.voltage_v, phases=phases,
        )

    def _compute_power(self, c: ConnectorState, t: int, out: list[Message]) -> None:
        c.power_cell = t // STEP_S
        cfg = c.config
        ev = c.ev
        c.power_w, c.current_a, c.offered_a = 0, Decimal("0"), Decimal("0")
        if ev is None or c.tx is None:
            return self._set_status(c, out)
        phases = 3 if cfg.dc else min(ev.phases, cfg.phases)
        limit = self.limit(cfg.connector_id, phases)
        if limit.number_phases is not None and not cfg.dc:
            phases = min(phases, limit.number_phases)
        c.phases_used = phases
        taper = c.taper_permille
        full = c.ev_energy_wh >= ev.battery_wh
        if cfg.dc:
            offered_w = cfg.max_power_w or 0
            if limit.current_a is not None:
                offered_w = min(offered_w, int(limit.current_a * cfg.voltage_v * 3))
            c.offered_a = (Decimal(offered_w) / (cfg.voltage_v * 3)).quantize(TENTH, rounding=ROUND_DOWN)
            if offered_w <= 0 or (cfg.min_power_w and offered_w < cfg.min_power_w) or full:
                return self._set_status(c, out)
            c.power_w = min(offered_w, ev.max_dc_power_w * taper // 1000)
            c.current_a = (Decimal(c.power_w) / (cfg.voltage_v * 3)).quantize(TENTH, rounding=ROUND_DOWN)
            return self._set_status(c, out)
        offered = cfg.max_current_a if cfg.max_current_a is not None else Decimal("32")
        if limit.current_a is not None:
            offered = min(offered, limit.current_a)
        c.offered_a = offered
        if offered < cfg.min_current_a or offered <= 0 or full:
            return self._set_status(c, out)  # IEC 61851: below the minimum the EVSE pauses
        wanted = (ev.max_current_a * taper / 1000).quantize(TENTH, rounding=ROUND_DOWN)
        c.current_a = min(offered, wanted)
        c.power_w = int((c.current_a * cfg.voltage_v * phases).to_integral_value(rounding=ROUND_DOWN))
        return self._set_status(c, out)

    def _set_status(self, c: ConnectorState, out: list[Message]) -> None:
        if not c.operative and c.tx is None:
            status = UNAVAILABLE
        elif c.ev is None:
            status = AVAILABLE
        elif c.tx is None:
            status = FINISHING if c.finished else PREPARING
        elif c.power_w > 0:
            status = CHARGING
        elif c.ev_energy_wh >= c.ev.battery_wh or c.offered_a >= c.config.min_current_a:
            status = SUSPENDED_EV
        else:
            status = SUSPENDED_EVSE
        if status != c.status:
            c.status = status
            out.append(self.status_notification(c.config.connector_id))

    def _refresh(self, c: ConnectorState, out: list[Message]) -> None:
        """Something changed (a limit, a transaction): recompute now, not at the next grid point."""
        self._compute_power(c, self.t, out)

    # --- EVs -----------------------------------------------------------------------------

    def _plug(self, c: ConnectorState, ev: Ev, out: list[Message]) -> None:
        c.ev, c.ev_energy_wh = ev, ev.energy_wh
        c.finished = False
        if not c.operative:
            return
        self._set_status(c, out)
        c.awaiting_authorization = True
        out.append(Message("Authorize", {"id_tag": ev.id_tag}, connector_id=c.config.connector_id))

    def _unplug(self, c: ConnectorState, out: list[Message]) -> None:
        if c.tx is not None:
            self._stop(c, "EVDisconnected", out)
        c.ev = None
        c.awaiting_authorization = False
        c.finished = False
        self._refresh(c, out)

    def authorized(self, connector_id: int, status: str) -> list[Message]:
        """The answer to Authorize (or the local decision when offline)."""
        c = self.connectors[connector_id]
        out: list[Message] = []
        if not c.awaiting_authorization or c.ev is None:
            return out
        c.awaiting_authorization = False
        if status != "Accepted":
            return out  # the EV stays plugged in, Preparing, until it leaves
        self._start(c, c.ev.id_tag, out)
        return out

    def _start(self, c: ConnectorState, id_tag: str, out: list[Message]) -> None:
        ref = self._next_ref
        self._next_ref += 1
        c.tx = Transaction(ref, id_tag, self.t, c.register_wh)
        c.awaiting_authorization = False
        out.append(Message("StartTransaction", {
            "connector_id": c.config.connector_id, "id_tag": id_tag, "meter_start": c.register_wh,
            "timestamp": iso(self.t),
        }, tx_ref=ref))
        interval = self.meter_value_interval_s
        c.next_sample_t = self.t + interval if interval > 0 else None
        self._refresh(c, out)

    def transaction_started(self, tx_ref: int, transaction_id: int, status: str) -> list[Message]:
        """The answer to StartTransaction. A refused idTag stops the transaction (StopTransactionOnInvalidId)."""
        self.transaction_ids[tx_ref] = transaction_id
        out: list[Message] = []
        for c in self.connectors.values():
            if c.tx is not None and c.tx.ref == tx_ref:
                c.tx.transaction_id = transaction_id
                profiles = self.profiles.profiles.get(c.config.connector_id, [])
                self.profiles.profiles[c.config.connector_id] = [
                    replace(p, transaction_id=transaction_id) if p.purpose == TX and p.transaction_id is None else p
                    for p in profiles
                ]
                self._refresh(c, out)
                if status != "Accepted" and self.configuration["StopTransactionOnInvalidId"][0] == "true":
                    self._stop(c, "DeAuthorized", out)
                    self._refresh(c, out)
        return out

    def _stop(self, c: ConnectorState, reason: str, out: list[Message]) -> None:
        tx = c.tx
        assert tx is not None
        out.append(Message("StopTransaction", {
            "meter_stop": c.register_wh, "timestamp": iso(self.t), "transaction_id": tx.transaction_id,
            "reason": reason, "id_tag": tx.id_tag,
            "transaction_data": [{"timestamp": iso(self.t), "sampled_value": [{
                "value": str(c.register_wh), "context": "Transaction.End",
                "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh",
            }]}],
        }, tx_ref=tx.ref))
        c.tx = None
        c.finished = True
        c.next_sample_t = None
        self.profiles.end_transaction(c.config.connector_id)
        c.power_w, c.current_a = 0, Decimal("0")

    def resolve(self, message: Message) -> dict[str, Any]:
        """The payload to send now: transactionIds known only after StartTransaction's answer filled in."""
        if message.tx_ref is None or message.action == "StartTransaction":
            return message.payload
        # -1: the Start was never answered; the central system acknowledges and sorts it out.
        return {**message.payload, "transaction_id": self.transaction_ids.get(message.tx_ref, -1)}

    # --- messages ------------------------------------------------------------------------

    def boot_notification(self) -> Message:
        return Message("BootNotification", {
            "charge_point_vendor": self.config.vendor, "charge_point_model": self.config.model,
            "charge_point_serial_number": self.config.serial_number, "firmware_version": self.config.firmware_version,
            "meter_type": "SimMeter",
        })

    def status_notification(self, connector_id: int) -> Message:
        status = AVAILABLE if connector_id == 0 else self.connectors[connector_id].status
        return Message("StatusNotification", {
            "connector_id": connector_id, "error_code": "NoError", "status": status, "timestamp": iso(self.t),
        })

    def all_statuses(self) -> list[Message]:
        """After boot: connector 0 and every connector, as real chargers do."""
        return [self.status_notification(n) for n in (0, *self.connectors)]

    def meter_values(self, connector_id: int, context: str = "Sample.Periodic") -> Message:
        c = self.connectors[connector_id]
        wanted = {m.strip() for m in self.configuration["MeterValuesSampledData"][0].split(",")}
        values: list[dict[str, str]] = []

        def add(measurand: str, value: str, unit: str, phase: str | None = None) -> None:
            item = {"value": value, "context": context, "measurand": measurand, "location": "Outlet", "unit": unit}
            if phase:
                item["phase"] = phase
            values.append(item)

        if "Energy.Active.Import.Register" in wanted:
            add("Energy.Active.Import.Register", str(c.register_wh), "Wh")
        meter_phases = 3 if c.config.dc else c.config.phases
        if "Current.Import" in wanted:
            for n in range(1, meter_phases + 1):
                current = c.current_a if n <= c.phases_used and c.power_w else Decimal("0")
                add("Current.Import", str(current.quantize(TENTH)), "A", f"L{n}")
        if "Current.Offered" in wanted:
            add("Current.Offered", str(c.offered_a.quantize(TENTH)), "A")
        if "Power.Active.Import" in wanted:
            add("Power.Active.Import", str(c.power_w), "W")
        if "Voltage" in wanted:
            for n in range(1, meter_phases + 1):
                add("Voltage", str(c.config.voltage_v), "V", f"L{n}-N")
        if "SoC" in wanted and c.ev is not None and c.config.dc:
            add("SoC", str(c.soc_permille // 10), "Percent")
        tx_ref = c.tx.ref if c.tx else None
        payload: dict[str, Any] = {"connector_id": connector_id,
                                   "meter_value": [{"timestamp": iso(self.t), "sampled_value": values}]}
        return Message("MeterValues", payload, tx_ref=tx_ref)

    # --- commands from the central system --------------------------------------------------
    # Each returns (status for the answer, messages the charger sends next).

    def _by_transaction(self, transaction_id: int) -> ConnectorState | None:
        return next((c for c in self.connectors.values() if c.tx and c.tx.transaction_id == transaction_id), None)

    def remote_start(self, id_tag: str, connector_id: int | None,
                     profile: dict[str, Any] | None = None) -> tuple[str, list[Message]]:
        candidates = [self.connectors[connector_id]] if connector_id in self.connectors else (
            [] if connector_id else list(self.connectors.values()))
        c = next((c for c in candidates if c.ev is not None and c.tx is None and c.operative), None)
        if c is None:
            return "Rejected", []  # no EV waiting: a real charger would wait ConnectionTimeOut, we do not
        out: list[Message] = []
        self._start(c, id_tag, out)
        if profile is not None:
            # A TxProfile for the transaction about to start: it gets its transactionId with StartTransaction's
            # answer (transaction_started).
            with contextlib.suppress(ProfileRejected):
                tx_profile = replace(Profile.from_ocpp(profile), transaction_id=None)
                if tx_profile.kind == "Absolute" and tx_profile.start_schedule is None:
                    tx_profile = replace(tx_profile, start_schedule=datetime.fromtimestamp(self.t, UTC))
                self.profiles.profiles.setdefault(c.config.connector_id, []).append(tx_profile)
        return "Accepted", out

    def remote_stop(self, transaction_id: int) -> tuple[str, list[Message]]:
        c = self._by_transaction(transaction_id)
        if c is None:
            return "Rejected", []
        out: list[Message] = []
        self._stop(c, "Remote", out)
        self._refresh(c, out)
        return "Accepted", out

    def set_charging_profile(self, connector_id: int, data: dict[str, Any]) -> tuple[str, list[Message]]:
        if connector_id != 0 and connector_id not in self.connectors:
            return "Rejected", []
        tx = self.connectors[connector_id].tx if connector_id else None
        transaction_id = tx.transaction_id if tx else None
        now = datetime.fromtimestamp(self.t, UTC)
        try:
            profile = Profile.from_ocpp(data)
            if profile.kind == "Absolute" and profile.start_schedule is None:
                profile = replace(profile, start_schedule=now)  # received now, whenever it is followed
            delay = self.profile_delay(self._profiles_received)
            self._profiles_received += 1
            if delay or self.pending_profiles:
                # Answered now, checked as if applied now; followed after the delay, and never before a profile
                # received earlier: a charger applies its profiles in the order it got them (the delay is the
                # car's), so a quick 0 A must not be overtaken by the slower 16 A sent just before it.
                copy.deepcopy(self.profiles).add(connector_id, profile, now, transaction_id)
                after = max((apply_t for apply_t, *_ in self.pending_profiles), default=self.t)
                self.pending_profiles.append((max(self.t + delay, after), self._profiles_received, connector_id,
                                              profile, transaction_id))
                return "Accepted", []
            # A TxProfile for a transaction started offline names the transactionId we now know.
            self.profiles.add(connector_id, profile, now, transaction_id)
        except ProfileRejected:
            return "Rejected", []
        return "Accepted", self._refresh_all()

    def profile_delay(self, number: int) -> int:
        """Seconds before the ``number``-th profile received is followed: within ``profile_delay_s``, the
        same for the same charger and number in every run."""
        low, high = self.config.profile_delay_s
        if high == low:
            return low
        return low + zlib.crc32(f"{self.config.charge_point_id}:{number}".encode()) % (high - low + 1)

    def clear_charging_profile(self, *, profile_id: int | None = None, connector_id: int | None = None,
                               purpose: str | None = None, stack_level: int | None = None) -> tuple[str, list[Message]]:
        removed = self.profiles.clear(profile_id=profile_id, connector_id=connector_id, purpose=purpose,
                                      stack_level=stack_level)
        return ("Accepted" if removed else "Unknown"), self._refresh_all()

    def _refresh_all(self) -> list[Message]:
        out: list[Message] = []
        for c in self.connectors.values():
            self._refresh(c, out)
        return out

    def change_availability(self, connector_id: int, kind: str) -> tuple[str, list[Message]]:
        targets = list(self.connectors.values()) if connector_id == 0 else (
            [self.connectors[connector_id]] if connector_id in self.connectors else [])
        if not targets:
            return "Rejected", []
        operative = kind == "Operative"
        out: list[Message] = []
        scheduled = False
        for c in targets:
            c.operative = operative
            scheduled = scheduled or (c.tx is not None and not operative)
            self._refresh(c, out)
        return ("Scheduled" if scheduled else "Accepted"), out

    def unlock_connector(self, connector_id: int) -> tuple[str, list[Message]]:
        c = self.connectors.get(connector_id)
        if c is None:
            return "NotSupported", []
        out: list[Message] = []
        if c.tx is not None:
            self._stop(c, "UnlockCommand", out)
            self._refresh(c, out)
        return "Unlocked", out

    def reset(self, kind: str) -> list[Message]:
        """Stop every transaction before the reboot (the caller then reconnects and boots)."""
        out: list[Message] = []
        for c in self.connectors.values():
            if c.tx is not None:
                self._stop(c, "HardReset" if kind == "Hard" else "SoftReset", out)
                self._refresh(c, out)
        return out

    def trigger(self, requested: str, connector_id: int | None) -> tuple[str, list[Message]]:
        if connector_id is not None and connector_id != 0 and connector_id not in self.connectors:
            return "Rejected", []
        if requested == "BootNotification":
            return "Accepted", [self.boot_notification()]
        if requested == "Heartbeat":
            return "Accepted", [Message("Heartbeat", {})]
        if requested == "StatusNotification":
            numbers = [connector_id] if connector_id is not None else [0, *self.connectors]
            return "Accepted", [self.status_notification(n) for n in numbers]
        if requested == "MeterValues":
            numbers = [connector_id] if connector_id else list(self.connectors)
            return "Accepted", [self._triggered_meter_values(n) for n in numbers]
        if requested == "DiagnosticsStatusNotification":
            return "Accepted", [Message("DiagnosticsStatusNotification", {"status": "Idle"})]
        if requested == "FirmwareStatusNotification":
            return "Accepted", [Message("FirmwareStatusNotification", {"status": "Idle"})]
        return "NotImplemented", []

    def _triggered_meter_values(self, connector_id: int) -> Message:
        return self.meter_values(connector_id, context="Trigger")

    def get_configuration(self, keys: list[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
        names = keys or list(self.configuration)
        known = [{"key": k, "readonly": self.configuration[k][1], "value": self.configuration[k][0]}
                 for k in names if k in self.configuration]
        return known, [k for k in names if k not in self.configuration]

    def change_configuration(self, key: str, value: str) -> str:
        if key not in self.configuration:
            return "NotSupported"
        readonly = self.configuration[key][1]
        if readonly:
            return "Rejected"
        if key in ("MeterValueSampleInterval", "HeartbeatInterval", "ConnectionTimeOut") and not value.isdigit():
            return "Rejected"
        if key in ("MeterValuesSampledData", "StopTxnSampledData"):
            measurands = [m.strip() for m in value.split(",") if m.strip()]
            if not measurands or any(m not in SUPPORTED_MEASURANDS for m in measurands):
                return "Rejected"
            value = ",".join(measurands)
        self.configuration[key] = (value, readonly)
        if key == "MeterValueSampleInterval":
            interval = int(value)
            for c in self.connectors.values():
                c.next_sample_t = self.t + interval if c.tx and interval > 0 else None
        return "Accepted"
