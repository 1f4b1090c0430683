"""Sending the load balancer's limits to a building's chargers (SetChargingProfile), break before make.

Runs in a Celery worker (apps.ocpp.tasks.dispatch_limits), one dispatch per building at a time (the claim
in apps.charging.smart_charging; a request that arrives meanwhile makes the holder dispatch again before
letting go), and talks to the chargers through apps.ocpp.commands (the channel layer reaches whichever
daphne process holds each charger's socket). The profiles themselves are apps.ocpp.charging_profiles (pure).

A dispatch:
1. reads the plan: every charger with a limit wanted or its profiles to send again (it connected or
   booted), its connectors, their open transactions and what each holds;
2. skips what would not change (an increase of less than 1 A over what the charger acknowledged, a lease
   not yet due: apps/charging/leases.py; a decrease is always sent); a connector without a transaction keeps its
   TxDefaultProfile until one starts;
3. sends, to every charger at once (each charger's calls one after the other, as OCPP wants), every
   *decrease*, then the static profiles of chargers that need them (ChargePointMaxProfile from the
   circuit, TxDefaultProfile per connector: both only ever protect, so no increase waits for them);
4. once every charger's decreases are answered, sends the increases; but none when a decrease got no
   answer (it may still be applied later, so an increase elsewhere could overshoot meanwhile): they are
   held and tried again by the next dispatch.
   A charger that is not connected does not hold anything back (it falls to its lease's floor on its own),
   nor does one that refused a decrease for good (the balancer counts it as unmanaged);
5. on Rejected, tries the fallbacks of charging_profiles.fallbacks one by one; what works is remembered
   on the charger and used from then on; NotSupported / NotImplemented marks the charger as having no
   smart charging. Whatever no fallback fixes raises a critical alert for the building's managers;
6. records what was sent and answered, and the time from the balancer's request to each profile being
   handed to the charger's connection (``DispatchReport.latencies_s``; ``ConnectorLimit.sent_at``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from apps.charging import leases
from apps.charging.models import ConnectorLimit
from apps.charging.smart_charging import (
    ChargerPlan,
    ChargerRecord,
    ConnectorPlan,
    LimitOutcome,
    chargers_record_profiles,
    dispatch_abandon,
    dispatch_begin,
    dispatch_claim,
    dispatch_release,
    limit_record,
)
from apps.core.tenants import in_condominium
from apps.ocpp import charging_profiles as cp_profiles
from apps.ocpp import commands, live, measurands
from apps.ocpp.charging_profiles import Built, Capabilities, ProfileRequest, Quirks
from apps.tenancy.models import Condominium

logger = logging.getLogger(__name__)

# A dispatch answers within ANSWER_TIMEOUT_S x (profiles per charger, fallbacks included): far less than this.
# A worker that dies holding the claim delays the building's next dispatch by at most this much.
CLAIM_HOLD = timedelta(seconds=60)
# A charger answers SetChargingProfile in milliseconds, over a slow modem in a second or two; one that does
# not answer in this time gets nothing more in this dispatch, and after two silences in a row nothing at all
# for RETRY_AFTER unless it reconnects (a socket that died without closing must not cost every dispatch a
# timeout).
ANSWER_TIMEOUT_S = 5.0
ROUND_TIMEOUT_S = 120.0  # a whole dispatch round, every charger of the building
RETRY_AFTER = timedelta(minutes=2)
# A socket that died without closing, told from a slow charger: one that has sent nothing for longer than it
# should have (its meter values' interval during a transaction, else its heartbeat's, plus the live state's
# resolution and SILENCE_MARGIN_S) while another charger of the building was heard from within its own bound
# (a stalled daphne process would silence them all) is given up on after SILENT_GIVE_UP_S without an answer,
# if it is still silent then, instead of ANSWER_TIMEOUT_S: the round, and a newer plan waiting for it (the
# decreases of a rise), is not held for the whole timeout.
SILENT_GIVE_UP_S = 1.0
SILENCE_MARGIN_S = 5.0
Status = ConnectorLimit.Status

# (schema name, chargePointId, action, payload, timeout or None: OCPP_RESPONSE_TIMEOUT) -> the charger's answer;
# raises apps.ocpp.commands' errors.
AsyncSend = Callable[[str, str, str, dict, float | None], Awaitable[dict[str, Any]]]


async def send_through_channel_layer(schema_name: str, charge_point_id: str, action: str, payload: dict,
                                     timeout: float | None = None) -> dict[str, Any]:
    return await commands.send_command(charge_point_id, action, payload, timeout, schema_name=schema_name,
                                       layer=_round_layer.get())


# The channel layer of the dispatch round in progress (contextvars: rounds of several threads at once).
_round_layer: contextvars.ContextVar[Any] = contextvars.ContextVar("dispatch_round_layer", default=None)


@dataclass
class _RoundLoop:
    """An event loop and its channel layer, kept for a thread's next dispatch rounds.

    Each round used to run in an event loop of its own (``async_to_sync``) with a layer made for it: opening
    the layer's and the live state's Redis connections again every round cost the dispatch worker 7 % of its
    time over 100 buildings (docs/benchmarks.md, "Balancing 100 buildings"). A layer must never be used from
    two loops (one carried a held receive lock into the next loop, and the worker's dispatches then waited for
    ever), so the loop is kept with it. Both are let go after a round that failed or gave up on an answer
    (a reply that comes late would stay in the layer's buffer), and in a forked process."""

    pid: int
    loop: asyncio.AbstractEventLoop
    layer: Any


_kept = threading.local()


def _run_round(run: _Dispatch) -> None:
    kept: _RoundLoop | None = getattr(_kept, "round_loop", None)
    if kept is None or kept.pid != os.getpid():
        kept = _kept.round_loop = _RoundLoop(os.getpid(), asyncio.new_event_loop(), commands.new_channel_layer())
    clean = False
    try:
        kept.loop.run_until_complete(_in_layer(kept.layer, run.run))
        clean = not run.abandoned_calls
    finally:
        if not clean:
            _kept.round_loop = None
            try:
                kept.loop.run_until_complete(commands.close_channel_layer(kept.layer, "a dispatch round"))
            finally:
                kept.loop.close()


async def _in_layer(layer: Any, coroutine: Callable[[], Awaitable[None]]) -> None:
    # Bounded: a round that never ends (a reply that never comes) must not hold a worker process for good;
    # what the round learnt is recorded by the caller either way.
    token = _round_layer.set(layer)
    try:
        await asyncio.wait_for(coroutine(), ROUND_TIMEOUT_S)
    finally:
        _round_layer.reset(token)


@dataclass
class DispatchReport:
    """What one dispatch did: each connector's outcome, the frames sent, and the reaction times."""

    busy: bool = False
    outcomes: dict[int, str] = field(default_factory=dict)  # connector pk -> ConnectorLimit status
    sent: list[tuple[str, int, str]] = field(default_factory=list)  # (chargePointId, connectorId, purpose)
    latencies_s: list[float] = field(default_factory=list)  # from limits_set to the profile handed over
    failed: dict[str, str] = field(default_factory=dict)  # chargePointId -> what no fallback fixed
    rounds: int = 0

    def merge(self, other: DispatchReport) -> None:
        self.outcomes.update(other.outcomes)
        self.sent += other.sent
        self.latencies_s += other.latencies_s
        self.failed.update(other.failed)
        self.rounds += other.rounds


def dispatch_building(schema_name: str, send: AsyncSend = send_through_channel_layer, *,
                      timeout: float | None = None) -> DispatchReport:
    """Dispatch the building's limits (sync: a Celery worker, a shell). Safe to run twice at once.

    ``timeout``: seconds to wait for each answer (default ANSWER_TIMEOUT_S)."""
    try:
        with in_condominium(schema_name):
            if not dispatch_claim(hold=CLAIM_HOLD):
                return DispatchReport(busy=True)  # the holder dispatches again before letting go
    except Condominium.DoesNotExist:
        return DispatchReport()
    report = DispatchReport()
    try:
        return _dispatch_rounds(schema_name, send, timeout, report)
    except BaseException:
        # A round that failed lets go at once (the request stays, for the next dispatch): held, the claim would
        # keep every dispatch of the building waiting until it expires (CLAIM_HOLD).
        try:
            with in_condominium(schema_name):
                dispatch_abandon()
        except Exception:
            logger.exception("dispatch of %s: could not let go after a failure; the claim expires by itself",
                             schema_name)
        raise


def _dispatch_rounds(schema_name: str, send: AsyncSend, timeout: float | None,
                     report: DispatchReport) -> DispatchReport:
    while True:
        with in_condominium(schema_name):
            planned_at = timezone.now()
            plans = dispatch_begin()
        run = _Dispatch(schema_name, plans, send, timeout)
        try:
            _run_round(run)
        finally:
            with in_condominium(schema_name):
                limit_record(run.outcomes.values(), planned_at=planned_at)
                # Nothing sent nor learnt: a charger's record, note and alerts stay as they are.
                chargers_record_profiles(
                    ChargerRecord(
                        charge_point_pk=charger.plan.pk, charge_point_id=charger.plan.charge_point_id,
                        quirks=charger.quirks.to_json(), static_ok=None if charger.unanswered else charger.static_ok,
                        note="; ".join(charger.notes), failed="; ".join(charger.failed),
                        retry_at=_retry_at(charger, run.now),
                        defaults_reset=tuple(charger.defaults_reset) if charger.quirks.tx_profile_rejected else ())
                    for charger in run.chargers.values() if charger.touched(run.now))
        report.merge(run.report())
        with in_condominium(schema_name):
            if dispatch_release():
                return report


def _retry_at(charger: _Charger, now: datetime) -> datetime | None:
    """None: it answered. A first silence is tried again at the next dispatch (it may have been slow once);
    a second one in a row waits RETRY_AFTER (a socket that died without closing), unless it reconnects."""
    if not charger.unanswered:
        return None
    if charger.plan.retry_at is None:
        return now
    return max(charger.plan.retry_at, now + RETRY_AFTER) if charger.plan.retry_at <= now else charger.plan.retry_at


@dataclass
class _Charger:
    plan: ChargerPlan
    capabilities: Capabilities
    quirks: Quirks
    connected: bool = True
    unanswered: bool = False  # a call timed out: nothing more is sent to it in this dispatch
    static_ok: bool | None = None
    # Connectors whose live limit sits in their TxDefaultProfile (a charger that refuses TxProfile): the safe
    # default must not overwrite it.
    live_on_default: set[int] = field(default_factory=set)
    defaults_reset: list[int] = field(default_factory=list)  # connectors whose safe default was acknowledged
    notes: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    sent: bool = False  # a profile went to it in this dispatch
    last_seen: float = 0.0  # unix time of its latest frame in the live state (0: not known)
    silence_bound_s: float = 0.0  # heard from less long ago than this: it talks as it should

    def silent(self, now: float) -> bool:
        """Nothing heard from it for longer than it should have (see SILENT_GIVE_UP_S)."""
        return self.last_seen > 0 and now - self.last_seen > self.silence_bound_s

    def touched(self, now: datetime) -> bool:
        """Whether there is anything to record: something sent, answered or not, a resend asked for, a silence
        to remember or to forget."""
        return (self.sent or self.unanswered or self.plan.resend or bool(self.notes or self.failed)
                or self.quirks.to_json() != self.plan.quirks or _retry_at(self, now) != self.plan.retry_at)


@dataclass
class _Item:
    """One profile to send: the request, and for a live limit the connector it is for."""

    request: ProfileRequest
    connector: ConnectorPlan | None = None


@dataclass
class _Answer:
    status: str  # a ConnectorLimit status
    built: Built | None = None
    sent_at: datetime | None = None


class _Dispatch:
    def __init__(self, schema_name: str, plans: list[ChargerPlan], send: AsyncSend, timeout: float | None):
        self.schema_name = schema_name
        self.send = send
        self.timeout = timeout if timeout is not None else ANSWER_TIMEOUT_S
        self.now = timezone.now()
        self.chargers = {
            p.charge_point_id: _Charger(p, Capabilities.from_configuration(p.configuration),
                                        Quirks.from_json(p.quirks))
            for p in plans
        }
        self.outcomes: dict[int, LimitOutcome] = {}
        self.timed_out: list[int] = []  # connectors whose live limit got no answer in this dispatch
        self.sent: list[tuple[str, int, str]] = []
        self.latencies: list[float] = []
        self._due_before: dict[int, datetime] = {}  # lease length -> a lease ending before this is due now
        self.heard: set[str] = set()  # chargers of the round heard from within their bound when it began
        self.abandoned_calls = 0  # calls given up on before their answer: it may still come

    def lease_due(self, lease_s: int, lease_until: datetime) -> bool:
        """``leases.renewal_due`` for this building at this dispatch's time, its bound computed once per length."""
        if lease_s not in self._due_before:
            self._due_before[lease_s] = leases.due_if_ending_before(self.schema_name, lease_s, self.now)
        return lease_until < self._due_before[lease_s]

    def report(self) -> DispatchReport:
        return DispatchReport(
            outcomes={pk: o.status for pk, o in self.outcomes.items()}, sent=list(self.sent),
            latencies_s=list(self.latencies),
            failed={cp_id: "; ".join(c.failed) for cp_id, c in self.chargers.items() if c.failed}, rounds=1)

    async def run(self) -> None:
        static: dict[str, list[_Item]] = {}
        first: dict[str, list[_Item]] = {}
        then: dict[str, list[_Item]] = {}
        # Connectors that may still hold a higher limit than the one sent to them (no answer, lease not over).
        doubtful: list[int] = []
        states = await live.read_many([cp_id for cp_id, charger in self.chargers.items()
                                       if charger.plan.retry_at is None or charger.plan.retry_at <= self.now])
        for cp_id, charger in self.chargers.items():
            retry_at = charger.plan.retry_at
            if retry_at is not None and retry_at > self.now:
                charger.unanswered = True
                for c in charger.plan.connectors:
                    if c.desired_a is not None and c.dirty:
                        self.outcome(c, Status.TIMEOUT, f"it did not answer lately: tried again from "
                                                         f"{retry_at:%H:%M:%S} or when it reconnects")
                    if c.unconfirmed_until is not None and c.unconfirmed_until > self.now:
                        doubtful.append(c.pk)
                continue
            state = states[cp_id]
            if not live.connected_to(state, self.schema_name):
                # Not connected, or the connection belongs to another building (an id moved while it was open).
                charger.connected = False
                for c in charger.plan.connectors:
                    if c.desired_a is not None:
                        self.outcome(c, Status.NOT_CONNECTED, "the charger is not connected")
                continue
            charger.last_seen = _seconds(state.get("last_seen"))
            charger.silence_bound_s = silence_bound_s(charger.plan, _seconds(state.get("heartbeat_interval")))
            static[cp_id], first[cp_id], then[cp_id] = self.items(charger)
        wall = time.time()
        self.heard = {cp_id for cp_id in first if not self.chargers[cp_id].silent(wall)
                      and self.chargers[cp_id].last_seen > 0}
        decreases_answered = {cp_id: asyncio.Event() for cp_id in first}

        async def charger_calls(cp_id: str) -> None:
            charger = self.chargers[cp_id]
            try:
                await self.send_all(charger, first[cp_id])
            finally:
                decreases_answered[cp_id].set()
            # The static profiles only protect: after this charger's decreases, and nobody's increase waits for
            # them (a charger whose socket died must not hold the whole building's increases back).
            await self.send_all(charger, static[cp_id])
            await asyncio.gather(*(event.wait() for event in decreases_answered.values()))
            unanswered = doubtful + self.timed_out
            if unanswered:
                for item in then[cp_id]:
                    assert item.connector is not None
                    self.outcome(item.connector, Status.HELD,
                                 f"increase held back: {len(unanswered)} decrease(s) not acknowledged")
                return
            await self.send_all(charger, then[cp_id])

        await asyncio.gather(*(charger_calls(cp_id) for cp_id in first))

    def items(self, charger: _Charger) -> tuple[list[_Item], list[_Item], list[_Item]]:
        """(static profiles, decreases, increases) for one charger; records what is not sent."""
        plan = charger.plan
        static: list[_Item] = []
        first: list[_Item] = []
        then: list[_Item] = []
        cap_a = cp_profiles.cabinet_cap_a(max_current_a=plan.circuit_current_a, max_power_w=plan.circuit_power_w,
                                          voltage_v=plan.circuit_voltage_v, phases=plan.circuit_phases)
        if plan.resend:
            static.append(_Item(ProfileRequest(cp_profiles.CHARGE_POINT_MAX, 0, cap_a,
                                              phases=plan.circuit_phases, voltage_v=plan.circuit_voltage_v)))
        for c in plan.connectors:
            safe_a = self.safe_default_a(c, cap_a, charger.quirks)
            if plan.resend:
                static.append(_Item(self.request(cp_profiles.TX_DEFAULT, c, safe_a)))
            if c.desired_a is None:
                continue
            if c.transaction_id is None:
                self.outcome(c, Status.NO_TRANSACTION, "no transaction: the connector's TxDefaultProfile applies")
                continue
            if c.applied_a is None and c.requested_at is not None and c.transaction_received_at is not None \
                    and c.requested_at < c.transaction_received_at:
                # Asked for an earlier session: the new one keeps its safe default until the balancer asks again.
                self.outcome(c, Status.NO_TRANSACTION,
                             "asked before this transaction started: its TxDefaultProfile applies")
                continue
            held = None if plan.resend else c.applied_a
            lease_due = c.lease_until is not None and c.lease_s is not None and self.lease_due(c.lease_s, c.lease_until)
            if charger.quirks.tx_profile_rejected and (c.applied_a is not None or c.transaction_id is not None):
                charger.live_on_default.add(c.number)  # its default is the live limit: no static default over it
            if not cp_profiles.is_change(c.desired_a, held) and not lease_due:
                self.outcome(c, Status.UNCHANGED, f"the charger holds {held} A")
                continue
            received = c.transaction_received_at or self.now
            request = self.request(cp_profiles.TX, c, c.desired_a, transaction_id=c.transaction_id,
                                   lease_s=c.lease_s, floor_a=c.floor_a if c.floor_a is not None else safe_a,
                                   elapsed_s=max(int((self.now - received).total_seconds()), 0))
            (first if cp_profiles.is_decrease(c.desired_a, self.held_before(charger, c, held, safe_a)) else then
             ).append(_Item(request, c))
        return static, first, then

    def held_before(self, charger: _Charger, c: ConnectorPlan, held: Decimal | None, safe_a: Decimal
                    ) -> Decimal | None:
        """What the connector draws under before this profile, for the order of sending (None: not known, which
        counts as more). A transaction that no limit was sent for yet runs under its TxDefaultProfile, the safe
        default, once the charger accepted its static profiles: its first TxProfile is then an increase (from
        0 A on a charger that accepts it), sent only after the decreases are acknowledged. Sent among them, it
        let a car start while another was still drawing what it was to give up. On a charger that refuses
        TxProfile the live limits sit in the TxDefaultProfile: there the default is the safe one only if it was
        acknowledged again after the last live limit (the reset after every session)."""
        if held is not None or charger.plan.resend or charger.plan.static_at is None:
            return held
        if c.unconfirmed_until is not None and c.unconfirmed_until > self.now:
            return None  # a limit went out without an answer: the charger may hold it
        if charger.quirks.tx_profile_rejected and c.acknowledged_at is not None and (
                c.default_reset_at is None or c.default_reset_at < c.acknowledged_at):
            return None  # its live limit sits in its TxDefaultProfile, and the safe default did not come back since
        return safe_a

    @staticmethod
    def safe_default_a(c: ConnectorPlan, cap_a: Decimal, quirks: Quirks) -> Decimal:
        # 0 A unless the charger refuses it; one that does is sent its minimum by build()'s fallback, learns
        # the quirk, and from then on gets (and the balancer reserves) the minimum.
        return cp_profiles.safe_default_a(circuit_cap_a=cap_a, connectors_on_circuit=c.connectors_on_circuit,
                                          min_current_a=c.min_current_a, max_current_a=c.max_current_a,
                                          accepts_zero=not quirks.zero_rejected)

    @staticmethod
    def request(purpose: str, c: ConnectorPlan, limit_a: Decimal, **kwargs: Any) -> ProfileRequest:
        return ProfileRequest(purpose, c.number, limit_a, phases=max(min(c.phases, 3), 1), voltage_v=c.voltage_v,
                              min_current_a=c.min_current_a, dc=c.dc, **kwargs)

    async def send_all(self, charger: _Charger, items: list[_Item]) -> None:
        for item in items:
            if item.connector is None and item.request.purpose == cp_profiles.TX_DEFAULT \
                    and item.request.connector_id in charger.live_on_default:
                continue
            answer = await self.send_profile(charger, item.request, item.connector)
            if item.connector is None:
                ok = answer.status == Status.ACCEPTED
                charger.static_ok = ok if charger.static_ok is None else (charger.static_ok and ok)
                if ok and item.request.purpose == cp_profiles.TX_DEFAULT:
                    charger.defaults_reset.append(item.request.connector_id)
                if not ok and answer.status in (Status.REJECTED, Status.NOT_SUPPORTED):
                    charger.failed.append(f"{item.request.purpose} on connector {item.request.connector_id} "
                                          f"{answer.status}")
                continue
            self.record_live(charger, item, answer)

    def record_live(self, charger: _Charger, item: _Item, answer: _Answer) -> None:
        c, built = item.connector, answer.built
        assert c is not None
        note = "; ".join(built.notes) if built else ""
        lease_until = None
        if built is not None and answer.status == Status.ACCEPTED:
            if built.purpose == cp_profiles.TX_DEFAULT:
                charger.live_on_default.add(c.number)
            if built.floor_a is not None and item.request.lease_s:
                lease_until = self.now + timedelta(seconds=item.request.lease_s)
            if built.limit_a > item.request.limit_a:
                charger.failed.append(f"connector {c.number} cannot be held at {item.request.limit_a} A "
                                      f"(it refuses 0 A); it may draw {built.limit_a} A")
        elif answer.status in (Status.REJECTED, Status.NOT_SUPPORTED):
            charger.failed.append(f"live limit on connector {c.number} {answer.status}")
        elif answer.status == Status.TIMEOUT:
            self.timed_out.append(c.pk)
        self.outcome(c, answer.status, note, built=built, sent_at=answer.sent_at, lease_until=lease_until)

    def outcome(self, c: ConnectorPlan, status: str, note: str = "", *, built: Built | None = None,
                sent_at: datetime | None = None, lease_until: datetime | None = None) -> None:
        # Whether it ends the wish is decided by the status (apps.charging.smart_charging.FINAL).
        self.outcomes[c.pk] = LimitOutcome(
            connector_pk=c.pk, status=status, note=note, sent=built.payload if built else None,
            sent_a=built.limit_a if built else None, sent_unit=built.unit if built else "",
            sent_purpose=built.purpose if built else "", sent_at=sent_at,
            applied_a=built.limit_a if built and status == Status.ACCEPTED else None,
            transaction_id=c.transaction_id, lease_until=lease_until)
        if sent_at is not None and c.requested_at is not None and c.dirty:
            self.latencies.append(max((sent_at - c.requested_at).total_seconds(), 0.0))

    async def send_profile(self, charger: _Charger, request: ProfileRequest,
                           connector: ConnectorPlan | None) -> _Answer:
        """Send one profile; on Rejected, the fallbacks one by one. The quirks that worked are the charger's."""
        if not charger.connected:
            return _Answer(Status.NOT_CONNECTED)
        if charger.unanswered:
            return _Answer(Status.TIMEOUT)
        if charger.quirks.no_smart_charging and not charger.plan.resend:
            return _Answer(Status.NOT_SUPPORTED)
        start = charger.quirks
        candidates = [start]
        index = 0
        answer = _Answer(Status.REJECTED)
        while index < len(candidates):
            quirks = candidates[index]
            built = cp_profiles.build(request, charger.capabilities, quirks, now=self.now)
            status, sent_at = await self.call(charger, built)
            answer = _Answer(status, built, sent_at)
            if status == Status.ACCEPTED:
                if quirks != charger.quirks:
                    learnt = Quirks.from_json({k: v for k, v in quirks.to_json().items()
                                               if k not in charger.quirks.to_json()})
                    charger.quirks = charger.quirks.merged(quirks)
                    charger.notes.append(f"learnt: {learnt.describe()}")
                    logger.info("%s: SetChargingProfile accepted with %s", charger.plan.charge_point_id,
                                learnt.describe())
                if charger.quirks.no_smart_charging:
                    charger.quirks = replace(charger.quirks, no_smart_charging=False)
                return answer
            if status == Status.NOT_SUPPORTED:
                charger.quirks = replace(charger.quirks, no_smart_charging=True)
                charger.notes.append("SetChargingProfile not supported")
                return answer
            if status != Status.REJECTED:
                if status == Status.NOT_CONNECTED:
                    charger.connected = False
                elif status == Status.TIMEOUT:
                    charger.unanswered = True
                return answer
            if index == 0:
                candidates += cp_profiles.fallbacks(request, charger.capabilities, start)
            index += 1
        logger.warning("%s: %s on connector %s refused with every fallback", charger.plan.charge_point_id,
                       request.purpose, request.connector_id)
        return replace(answer, status=Status.REJECTED)

    async def call(self, charger: _Charger, built: Built) -> tuple[str, datetime]:
        cp_id = charger.plan.charge_point_id
        sent_at = timezone.now()
        charger.sent = True
        self.sent.append((cp_id, built.connector_id, built.purpose))
        started = time.monotonic()
        call = asyncio.ensure_future(
            self.send(self.schema_name, cp_id, "SetChargingProfile", built.payload, self.timeout))
        try:
            if await self.given_up_as_silent(charger, call):
                self.abandoned_calls += 1
                return Status.TIMEOUT, sent_at
            answer = await call
        except commands.CommandTimeout:
            self.abandoned_calls += 1
            return Status.TIMEOUT, sent_at
        except commands.ChargerNotConnected:
            return Status.NOT_CONNECTED, sent_at
        except commands.CommandRejected as error:
            if error.error_code in ("NotSupported", "NotImplemented"):
                return Status.NOT_SUPPORTED, sent_at
            logger.warning("%s: SetChargingProfile answered %s", cp_id, error)
            return Status.REJECTED, sent_at
        except Exception:
            # Whether it reached the charger is not known: as good as no answer (and the other chargers' calls
            # of this dispatch go on).
            logger.exception("%s: SetChargingProfile failed", cp_id)
            return Status.TIMEOUT, sent_at
        finally:
            call.cancel()  # nothing if it ended; given up on, its answer (if one comes) is dropped
        status = str(answer.get("status", ""))
        logger.debug("%s: %s on %s answered %s in %.0f ms", cp_id, built.purpose, built.connector_id, status,
                     (time.monotonic() - started) * 1000)
        return (Status.ACCEPTED if status == "Accepted" else
                Status.NOT_SUPPORTED if status == "NotSupported" else Status.REJECTED), sent_at

    async def given_up_as_silent(self, charger: _Charger, call: asyncio.Future[Any]) -> bool:
        """Whether to give up on an unanswered call to a charger silent for longer than it should be while
        others of the building talk (SILENT_GIVE_UP_S); True once given up."""
        wall = time.time()
        if (self.timeout <= SILENT_GIVE_UP_S or not charger.silent(wall)
                or not self.heard - {charger.plan.charge_point_id}):
            return False
        await asyncio.wait({call}, timeout=SILENT_GIVE_UP_S)
        if call.done():
            return False
        charger.last_seen = _seconds((await live.read(charger.plan.charge_point_id)).get("last_seen"))
        if not charger.silent(time.time()):
            return False  # it spoke meanwhile: wait for the answer as for any charger
        note = (f"nothing heard from it for {int(time.time() - charger.last_seen)} s (its bound "
                f"{int(charger.silence_bound_s)} s) while the building's other chargers talk: given up after "
                f"{SILENT_GIVE_UP_S:g} s without an answer")
        if note not in charger.notes:
            charger.notes.append(note)
        logger.info("%s: %s", charger.plan.charge_point_id, note)
        return True


def silence_bound_s(plan: ChargerPlan, heartbeat_interval_s: float) -> float:
    """How long a charger that works may go without sending anything: its meter values' interval while a
    transaction is open on it, else its heartbeat's (as the platform gave it at boot); plus the live state's
    resolution and a margin."""
    interval = heartbeat_interval_s or float(settings.OCPP_HEARTBEAT_INTERVAL)
    sample_s = measurands.sample_interval_s(plan.configuration)
    if sample_s and any(c.transaction_id is not None for c in plan.connectors):
        interval = min(interval, float(sample_s))
    return interval + live.LAST_SEEN_RESOLUTION_S + SILENCE_MARGIN_S


def _seconds(raw: str | None) -> float:
    try:
        return float(raw or 0)
    except ValueError:
        return 0.0
