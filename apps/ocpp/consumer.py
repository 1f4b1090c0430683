"""OCPP 1.6J central system over Channels: one consumer per charger connection.

The consumer is the interface: it checks the handshake, keeps the frame log,
feeds frames to an ``ocpp`` ChargePoint (``CentralSystem``) and runs commands
that arrive through the channel layer. Handlers translate payloads into calls
of apps.charging.services (writes) and apps.charging.selectors (reads) and
return dataclasses.

Hot paths (Heartbeat, MeterValues) do not query the database themselves: the
charger's connectors and open sessions are kept in memory, live values go to
Redis, and frames and meter values are group-committed by apps.ocpp.framelog.
No answer leaves before the frame of its CALL (and the MeterValues it
acknowledges) is committed.

Never await a charger call inside a handler: the reply could only be routed
by the very loop that is waiting. Server-initiated calls run in the command
worker task, one at a time (OCPP allows one outstanding CALL per direction).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import random
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis.exceptions
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    NotSupportedError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    OCPPError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.exceptions import (
    NotImplementedError as ActionNotImplementedError,
)
from ocpp.messages import Call, CallError, MessageType, unpack
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call_result
from ocpp.v16.enums import Action, DataTransferStatus, RegistrationStatus

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise
from apps.charging import local_lists, selectors, services
from apps.electrical import services as electrical_services
from apps.ocpp import admission, database, edge, framelog, handshake, live, measurands, payloads, schemas
from apps.ocpp.delivery import send_to
from apps.ocpp.parsing import live_readings, meter_value_rows, parse_time

logger = logging.getLogger(__name__)

# How often the "last seen" time in Redis is refreshed at most (the watchdog works in minutes).
TOUCH_EVERY_S = live.LAST_SEEN_RESOLUTION_S
# A charger told Pending that boots again this little before its interval is over still keeps its appointment
# (its clock and its round trip).
APPOINTMENT_EARLY_S = 1.0
CONFIGURATION_KEYS_KEPT = (
    "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
    "MaxChargingProfilesInstalled", "MeterValuesSampledData", "MeterValueSampleInterval", "NumberOfConnectors",
    "HeartbeatInterval", "LocalAuthListEnabled", "LocalAuthListMaxLength", "SendLocalListMaxLength",
    "SupportedFeatureProfiles", "ClockAlignedDataInterval", "MeterValuesAlignedData", "StopTxnSampledData",
    "AuthorizeRemoteTxRequests", "LocalPreAuthorize", "LocalAuthorizeOffline", "ConnectionTimeOut",
    "ConnectorPhaseRotation", "ReserveConnectorZeroSupported",
)

# Frames received and not yet handled. A charger waits for each answer (one CALL at a time), so a
# well-behaved one never has more than a few here; one that floods is cut off instead of growing memory.
MAX_INBOX = 32
# Unique ids remembered to label answers in the frame log and to hold them for the group commit; junk ids
# that are never answered under the same id must not accumulate.
MAX_TRACKED_IDS = 64
# Answers to calls the platform never made (or gave up waiting for): a few are normal (a late answer),
# a stream of them is not. Burst, and refill per second.
UNSOLICITED_BURST, UNSOLICITED_RATE = 20, 1 / 60
KNOWN_ACTIONS = frozenset(action.value for action in Action)

_UNIQUE_ID = re.compile(r'^\s*\[\s*\d+\s*,\s*"([^"\\]{1,64})"')


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _frame_meta(raw: str) -> tuple[int | None, str, str]:
    """(message type, unique id, action) of a frame, as far as it can be read."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None, "", ""
    if not isinstance(msg, list) or len(msg) < 2:
        return None, "", ""
    kind = msg[0] if isinstance(msg[0], int) else None
    unique_id = str(msg[1])
    action = msg[2] if kind == MessageType.Call and len(msg) > 2 and isinstance(msg[2], str) else ""
    return kind, unique_id, action


def _ocpp16_error(error: OCPPError) -> OCPPError:
    """The ocpp package raises OCPP 2.0 names for some schema errors; 1.6 spells them differently."""
    if isinstance(error, FormatViolationError):
        return FormationViolationError(description=error.description, details=error.details)
    if isinstance(error, OccurrenceConstraintViolationError):
        return OccurenceConstraintViolationError(description=error.description, details=error.details)
    return error


def _call_error(unique_id: str, error: OCPPError) -> str:
    error = _ocpp16_error(error)
    cause = error.details.get("cause", "") if isinstance(error.details, dict) else ""
    return CallError(unique_id, error.code, error.description, {"cause": str(cause)[:500]} if cause else {}).to_json()


class CommandFailed(Exception):
    def __init__(self, result: dict[str, Any]):
        super().__init__(result.get("status"))
        self.result = result


class _Connection:
    """What the ocpp package expects of a websocket: recv() from a queue fed by the consumer."""

    def __init__(self, consumer: OcppConsumer):
        self.consumer = consumer
        self.inbox: asyncio.Queue[str] = asyncio.Queue()

    async def recv(self) -> str:
        return await self.inbox.get()

    async def send(self, text: str) -> None:
        await self.consumer.send_frame(text)


class CentralSystem(OcppChargePoint):
    """The platform's side of one charger connection."""

    def __init__(self, consumer: OcppConsumer, connection: _Connection):
        super().__init__(consumer.charge_point_id, connection, response_timeout=settings.OCPP_RESPONSE_TIMEOUT)
        self.consumer = consumer
        self.awaiting: str | None = None  # unique id of the platform's outstanding CALL
        self.abandoned: BoundedMap[str] = BoundedMap(8)  # calls given up on: unique id -> action

    async def start(self) -> None:
        while True:
            raw = await self._connection.recv()
            # The frame rate limit: a charger faster than OCPP_MAX_FRAME_RATE is slowed down, not served
            # faster; one that does not wait for the answers fills the inbox and is cut off (receive()).
            delay = self.consumer.frame_budget.wait(time.monotonic())
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self.route_message(raw)
            except Exception:
                # Never let one bad frame end the connection's loop.
                logger.exception("%s: failed to handle %r", self.id, raw[:500])

    async def route_message(self, raw_msg: str) -> None:
        try:
            msg = unpack(raw_msg)
        except OCPPError as error:
            match = _UNIQUE_ID.match(raw_msg) if isinstance(raw_msg, str) else None
            await self._send(_call_error(match.group(1) if match else "-1", error))
            return
        if msg.message_type_id == MessageType.Call:
            if not isinstance(msg.unique_id, str) or not isinstance(msg.payload, dict):
                await self._send(_call_error(str(msg.unique_id), FormationViolationError(
                    details={"cause": "uniqueId must be a string and the payload an object"})))
                return
            try:
                refusal = self._refuse_call(msg.action, msg.payload)
                if refusal is not None:
                    raise refusal
                await self._handle_call(msg)
            except OCPPError as error:
                logger.info("%s: %s answered with %s", self.id, msg.action, error.code)
                await self._send(_call_error(msg.unique_id, error))
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            if msg.unique_id == self.awaiting:
                self._response_queue.put_nowait(msg)
            elif msg.unique_id in self.abandoned:
                logger.info("%s: late answer to %s dropped", self.id, self.abandoned.pop(msg.unique_id))
            else:
                await self.consumer.unsolicited_answer(str(msg.unique_id))

    async def _handle_call(self, msg: Call) -> None:
        """Answer a CALL (already known to be an action the platform takes, see _refuse_call).

        What the ocpp package's own ``_handle_call`` does, without its per-message costs: the payload is
        validated through apps/ocpp/schemas.py (the package's verdict, with a fast path), keys are converted
        once per key (apps/ocpp/payloads.py), and no handler's signature is inspected (none takes the
        unique id). The answer is validated too, as the package does: a malformed answer (a handler's
        mistake) never goes on the wire; the charger gets the validation's CALLERROR instead.
        """
        handlers = self.route_map[msg.action]
        await schemas.validate(msg)
        kwargs = payloads.to_snake(msg.payload)
        try:
            response = handlers["_on_action"](**kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as error:
            self.logger.exception("Error while handling request '%s'", msg)
            await self._send(msg.create_call_error(error).to_json())
            return
        result = msg.create_call_result(payloads.response_payload(response))
        await schemas.validate(result)
        await self._send(result.to_json())
        after_action = handlers.get("_after_action")
        if after_action is not None:
            followup = after_action(**kwargs)
            if inspect.isawaitable(followup):
                # A task, so that a call made in it does not block this connection's loop.
                task = asyncio.ensure_future(followup)
                self.consumer.background.add(task)
                task.add_done_callback(self.consumer.background.discard)

    def _refuse_call(self, action: object, payload: dict) -> OCPPError | None:
        """The error a CALL gets before any handler runs, or None to handle it.

        OCPP-J 1.6 section 4.2.3: NotImplemented is for an action the receiver does not know at all,
        NotSupported for one it knows but does not take (the ocpp package has the two the other way round).
        """
        if action not in self.route_map:
            if action in KNOWN_ACTIONS:
                return NotSupportedError(details={"cause": f"{action} is not an action a charger sends"})
            return ActionNotImplementedError(details={"cause": f"{str(action)[:60]!r} is no OCPP 1.6 action"})
        problem = edge.check(str(action), payload)
        if problem is None:
            return None
        code, description = problem
        error = {edge.PROPERTY: PropertyConstraintViolationError, edge.TYPE: TypeConstraintViolationError}[code]
        return error(description=description, details={"cause": description})

    async def call_raw(self, action: str, payload: dict, timeout: float) -> dict[str, Any]:
        """Send one CALL and wait for its answer. Only the command worker calls this."""
        call = Call(unique_id=str(uuid.uuid4()), action=action, payload=payload)
        try:
            await schemas.validate(call)
        except OCPPError as error:
            return {"status": "invalid", "error_code": _ocpp16_error(error).code,
                    "description": str(error.details.get("cause", error.description))}
        async with self._call_lock:
            self.awaiting = call.unique_id
            try:
                await self._send(call.to_json())
                response = await self._get_specific_response(call.unique_id, timeout)
            except TimeoutError:
                return {"status": "timeout", "sent": True}
            finally:
                self.awaiting = None
                # Timed out or cancelled: an answer may still come, and is no misbehaviour.
                self.abandoned[call.unique_id] = action
            self.abandoned.pop(call.unique_id, None)
        if response.message_type_id == MessageType.CallError:
            return {"status": "error", "error_code": response.error_code,
                    "description": response.error_description, "details": response.error_details}
        return {"status": "ok", "payload": response.payload}

    # --- charger-initiated messages -------------------------------------------------

    @on(Action.boot_notification)
    async def on_boot_notification(self, charge_point_vendor: str, charge_point_model: str, **info: str):
        interval = settings.OCPP_HEARTBEAT_INTERVAL
        if not self.consumer.booting:
            now_m = time.monotonic()
            kept = self.consumer.appointment_at is not None and now_m >= self.consumer.appointment_at
            if not admission.boots.enter(settings.OCPP_MAX_CONCURRENT_BOOTS, now_m,
                                         budget_s=settings.OCPP_ADMISSION_BUDGET_S, appointment=kept):
                # Saturated: come back later, nothing written (the boot is recorded when it is accepted).
                _log_shed("boot", admission.boots)
                self.consumer.boot_accepted = False
                interval = admission.boots.appointment(now_m, _jitter)
                self.consumer.appointment_at = now_m + interval - APPOINTMENT_EARLY_S
                return call_result.BootNotification(current_time=_now_iso(), status=RegistrationStatus.pending,
                                                    interval=interval)
            self.consumer.appointment_at = None
            self.consumer.booting = True
        ctx = self.consumer.ctx
        # Configuration read lately and as wanted (a reconnect storm): no GetConfiguration at this boot.
        self.consumer.read_configuration = measurands.needs_reading(
            ctx.configuration, read_at=ctx.configuration_read_at, now=timezone.now(),
            sample_interval_s=settings.OCPP_METER_VALUE_SAMPLE_INTERVAL,
            max_age=timedelta(hours=settings.OCPP_CONFIGURATION_MAX_AGE_HOURS))
        accepted = await self.consumer.db(
            services.charger_record_boot, charge_point_pk=ctx.pk,
            info={"charge_point_vendor": charge_point_vendor, "charge_point_model": charge_point_model, **info},
            heartbeat_interval=interval,
            sync_local_list=not self.consumer.read_configuration
            and bool(local_lists.local_list_supported(ctx.configuration)),
        )
        self.consumer.boot_accepted = accepted
        status = "Accepted" if accepted else "Pending"
        await self.consumer.live_update({"heartbeat_interval": interval, "boot_status": status})
        return call_result.BootNotification(
            current_time=_now_iso(), interval=interval if accepted else min(interval, 60),
            status=RegistrationStatus.accepted if accepted else RegistrationStatus.pending,
        )

    @after(Action.boot_notification)
    async def after_boot_notification(self, **_: Any):
        if self.consumer.boot_accepted and self.consumer.read_configuration:
            self.consumer.start_configuration()
        else:
            self.consumer.boot_done()

    @on(Action.heartbeat)
    async def on_heartbeat(self):
        return call_result.Heartbeat(current_time=_now_iso())

    @on(Action.status_notification)
    async def on_status_notification(self, connector_id: int, error_code: str, status: str, timestamp: str = "",
                                     info: str = "", vendor_id: str = "", vendor_error_code: str = ""):
        at = parse_time(timestamp) or timezone.now()
        if self.consumer.memory.status_is_news(connector_id, status, error_code):
            await self.consumer.db(
                services.connector_record_status, charge_point_pk=self.consumer.ctx.pk, charge_point_id=self.id,
                connector_number=connector_id, status=status, error_code=error_code, info=info,
                vendor_error_code=vendor_error_code, at=at,
            )
            self.consumer.memory.status_written(connector_id, status, error_code)
        await self.consumer.live_update({f"status:{connector_id}": status, f"error_code:{connector_id}": error_code})
        return call_result.StatusNotification()

    @on(Action.authorize)
    async def on_authorize(self, id_tag: str):
        decision = await self.consumer.db(selectors.authorize_id_tag, id_tag, charge_point_pk=self.consumer.ctx.pk)
        return call_result.Authorize(id_tag_info=_id_tag_info(decision))

    @on(Action.start_transaction)
    async def on_start_transaction(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str,
                                   reservation_id: int | None = None):
        result = await self.consumer.db(
            services.session_start, charge_point_pk=self.consumer.ctx.pk, connector_number=connector_id,
            id_tag=id_tag, meter_start=meter_start, timestamp=parse_time(timestamp), received_at=timezone.now(),
            reservation_id=reservation_id,
        )
        self.consumer.memory.session_started(
            connector_id, OpenSession(result.transaction_id, result.session_pk, meter_start))
        await self.consumer.live_update({f"transaction_id:{connector_id}": result.transaction_id,
                                         f"meter_start_wh:{connector_id}": meter_start,
                                         f"session_energy_wh:{connector_id}": 0})
        return call_result.StartTransaction(transaction_id=result.transaction_id,
                                            id_tag_info=_id_tag_info(result.decision))

    @on(Action.stop_transaction)
    async def on_stop_transaction(self, meter_stop: int, timestamp: str, transaction_id: int, reason: str = "",
                                  id_tag: str = "", transaction_data: list | None = None):
        connector_number = self.consumer.memory.connector_of(transaction_id)
        rows = meter_value_rows(transaction_data or [], connector_number=connector_number or 0,
                                transaction_id=transaction_id, received_at=timezone.now())
        # No flush needed before counting energy: every MeterValues answered was committed first.
        result = await self.consumer.db(
            services.session_stop, charge_point_pk=self.consumer.ctx.pk, charge_point_id=self.id,
            transaction_id=transaction_id, meter_stop=meter_stop, timestamp=parse_time(timestamp),
            received_at=timezone.now(), id_tag=id_tag, reason=reason, transaction_data=rows,
        )
        for number in self.consumer.memory.session_stopped(result.session_pk):
            names = (f"transaction_id:{number}", f"meter_start_wh:{number}", f"session_energy_wh:{number}")
            await live.remove_fields(self.id, *names)
            self.consumer.memory.live_removed(names)
        if result.decision is None:
            return call_result.StopTransaction()
        return call_result.StopTransaction(id_tag_info=_id_tag_info(result.decision))

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, transaction_id: int | None = None):
        received_at = timezone.now()
        session_pk = await self.consumer.session_for_meter_values(connector_id, transaction_id)
        rows = meter_value_rows(meter_value, connector_number=connector_id, transaction_id=transaction_id,
                                received_at=received_at)
        for row in rows:
            row["session_id"] = session_pk
        # Acknowledged means committed: a failed write raises here and the charger gets InternalError.
        await framelog.writer().add_meter_values(self.consumer.schema, self.id, self.consumer.ctx.pk, rows)
        site_meter = self.consumer.site_meter
        if site_meter is not None and connector_id == site_meter[1] and rows:
            # The building's load at the supply: stored (and announced) before the charger hears back.
            await self.consumer.db(electrical_services.site_readings_from_ocpp, meter_key=site_meter[0], rows=rows,
                                   building_schema=self.consumer.schema)
        readings = live_readings(rows)
        register = readings.get(f"register_wh:{connector_id}")
        session = self.consumer.memory.session_on(connector_id)
        if register is not None and session is not None:
            energy = selectors.open_session_energy_wh(session.meter_start, int(register))
            if energy is not None:
                readings[f"session_energy_wh:{connector_id}"] = str(energy)
        await self.consumer.live_update(readings)
        return call_result.MeterValues()

    @on(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, message_id: str = "", data: str = ""):
        logger.info("%s: DataTransfer from vendor %r (%r) not handled", self.id, vendor_id, message_id)
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(self, status: str):
        await self.consumer.live_update({"diagnostics_status": status})
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status_notification(self, status: str):
        await self.consumer.live_update({"firmware_status": status})
        return call_result.FirmwareStatusNotification()


_jitter = random.Random()  # noqa: S311 - spreading retries, no secret
_last_shed_log = [0.0]


def _log_shed(what: str, gate: admission.Gate) -> None:
    """At most one line a second while shedding load: the log must not add to it."""
    now = time.monotonic()
    if now - _last_shed_log[0] >= 1:
        _last_shed_log[0] = now
        logger.warning("saturated: %s refused (%s in progress, %s refused so far)", what, gate.in_progress,
                       gate.refused)


def _load_and_mark_online(charge_point_id: str) -> selectors.ChargerContext | None:
    """What a new connection keeps about its charger (site-meter role included), and the charger marked online:
    one trip to the database threads, which every connection of the process shares (a reconnect storm queues
    there), of two statements."""
    ctx = selectors.charger_context(charge_point_id)
    if ctx is not None and not ctx.removed:
        services.charger_connected(charge_point_pk=ctx.pk, charge_point_id=ctx.charge_point_id,
                                   was_online=ctx.online)
    return ctx


def _id_tag_info(decision: selectors.IdTagDecision) -> dict[str, str]:
    info = {"status": decision.status}
    if decision.parent_id_tag:
        info["parent_id_tag"] = decision.parent_id_tag
    if decision.expiry_date:
        info["expiry_date"] = decision.expiry_date.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return info


V = TypeVar("V")


class BoundedMap(OrderedDict[str, V]):
    """A dict that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


@dataclass
class OpenSession:
    transaction_id: int
    session_pk: int
    meter_start: int | None


class ChargerMemory:
    """What a connection remembers about its charger between messages, so that the hot paths (StatusNotification
    that changes nothing, MeterValues of an open session) need no query. Loaded at the handshake; kept up to
    date by the handlers. No I/O."""

    def __init__(self, ctx: selectors.ChargerContext):
        self.ctx = ctx
        self.open_sessions = {n: OpenSession(tid, pk, start) for n, (tid, pk, start) in ctx.open_sessions.items()}
        self.statuses: dict[int, tuple[str, str]] = dict(ctx.statuses)
        self.live: dict[str, str] = {}  # the charger's live hash in Redis, as this connection knows it

    def live_loaded(self, before: dict[str, str], written: dict[str, str | int]) -> None:
        """The live hash as the connection found it, with what the connection wrote into it."""
        self.live = dict(before)
        self.live_written({k: str(v) for k, v in written.items()})

    def live_news(self, fields: dict[str, str | int]) -> dict[str, str]:
        """The fields whose values the live hash does not hold (as far as this connection knows: only a newer
        connection of the same charger, which replaces this one, writes it too)."""
        return {name: text for name, value in fields.items() if self.live.get(name) != (text := str(value))}

    def live_written(self, fields: dict[str, str]) -> None:
        self.live.update(fields)

    def live_removed(self, names: Iterable[str]) -> None:
        for name in names:
            self.live.pop(name, None)

    def status_is_news(self, connector: int, status: str, error_code: str) -> bool:
        """Whether a status must be written (a change; Faulted every time, for the alert's count)."""
        return self.statuses.get(connector) != (status, error_code) or status == "Faulted"

    def status_written(self, connector: int, status: str, error_code: str) -> None:
        self.statuses[connector] = (status, error_code)

    def session_started(self, connector: int, session: OpenSession) -> None:
        self.open_sessions[connector] = session

    def session_stopped(self, session_pk: int) -> list[int]:
        """Forget the session; the connectors it was open on."""
        numbers = [n for n, s in self.open_sessions.items() if s.session_pk == session_pk]
        for number in numbers:
            del self.open_sessions[number]
        return numbers

    def connector_of(self, transaction_id: int) -> int | None:
        for number, session in self.open_sessions.items():
            if session.transaction_id == transaction_id:
                return number
        return None

    def session_with(self, transaction_id: int) -> OpenSession | None:
        return next((s for s in self.open_sessions.values() if s.transaction_id == transaction_id), None)

    def session_on(self, connector: int) -> OpenSession | None:
        return self.open_sessions.get(connector)


@dataclass
class Command:
    action: str
    payload: dict
    deadline: float
    reply_to: str = ""
    command_id: str = ""
    future: asyncio.Future | None = field(default=None, repr=False)


class OcppConsumer(AsyncWebsocketConsumer):
    charge_point_id: str
    schema: str
    ctx: selectors.ChargerContext

    async def dispatch(self, message: dict) -> None:
        """Channels' dispatch without its trip to the database thread before every message.

        Channels closes stale database connections before each message it hands a consumer, on the one
        thread that runs ``database_sync_to_async``: for a charger, before every frame and every channel-layer
        event, most of which never touch the database. In a reconnect storm those trips queued with the
        boots' real queries (about five per charger) and the thread switches cost the event loop. Every
        query of this consumer runs through apps/ocpp/database.py (``db()``, the handshake), which closes
        stale connections itself, before and after.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict) -> None:
        # As channels' own, without its closing of stale connections on the database thread (see dispatch).
        await self.disconnect(message["code"])
        raise StopConsumer()

    # --- handshake -------------------------------------------------------------------

    async def connect(self) -> None:
        self.charge_point_id = str(self.scope.get("url_route", {}).get("kwargs", {}).get("charge_point_id", ""))
        self.replaced = False
        self.accepted = False
        self.booting = False
        self.appointment_at: float | None = None  # told Pending: from when its boot is taken (monotonic)
        self.read_configuration = True
        self.began = time.time()  # when this handshake began: a later one takes the charger over, an earlier not
        if not admission.handshakes.enter(settings.OCPP_MAX_CONCURRENT_HANDSHAKES, time.monotonic(),
                                          budget_s=settings.OCPP_ADMISSION_BUDGET_S):
            _log_shed("handshake", admission.handshakes)
            await self.close()  # 403 at once: the charger retries later
            return
        try:
            await self._connect()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            if self.accepted:
                raise
            # Redis unreachable, or every connection of the process's pool busy for its whole timeout (a storm
            # on a saturated process): refused like a shed handshake, the charger retries; never a 500.
            _log_shed(f"handshake (Redis: {error})", admission.handshakes)
            with contextlib.suppress(Exception):  # the live state may already name this connection: not for long
                await live.release(self.charge_point_id, self.channel_name, int(time.time()))
            await self.close()
        finally:
            admission.handshakes.leave(time.monotonic())

    async def _connect(self) -> None:
        decision = await handshake.check(self.scope)
        if isinstance(decision, handshake.Refused):
            await self.close()  # before accept(): the handshake is answered with 403
            return
        registration, remote = decision.registration, decision.remote
        self.charge_point_id = registration.charge_point_id
        self.schema = registration.schema_name
        ctx = await self.db(_load_and_mark_online, self.charge_point_id)
        if ctx is None or ctx.removed:
            await database.run(handshake.record_refusal)(
                charge_point_id=self.charge_point_id, remote_address=remote,
                reason="removed-charger" if ctx else "not-commissioned")
            await self.close()
            return
        self.ctx = ctx
        self.site_meter = ctx.site_meter
        self.memory = ChargerMemory(ctx)
        self.boot_accepted = ctx.enabled
        self.marked_offline = False
        # unique id -> action, to label the answers in the frame log
        self.in_flight: BoundedMap[str] = BoundedMap(MAX_TRACKED_IDS)
        # unique id of a CALL received -> commit of its frame
        self.commits: BoundedMap[asyncio.Future] = BoundedMap(MAX_TRACKED_IDS)
        now_m = time.monotonic()
        self.frame_budget = edge.TokenBucket(settings.OCPP_MAX_FRAME_RATE, settings.OCPP_FRAME_BURST, now_m)
        self.unsolicited_budget = edge.TokenBucket(UNSOLICITED_RATE, UNSOLICITED_BURST, now_m)
        self.closing = False
        self.commands: asyncio.Queue[Command] = asyncio.Queue()
        self.current_command: Command | None = None
        self.configure_task: asyncio.Task | None = None
        self.background: set[asyncio.Task] = set()

        # Connected in the live state before the handshake completes: a command sent the moment the charger
        # is connected (by the charger's own account) must not find it "not connected".
        now = int(time.time())
        fields = {"schema": self.schema, "connected": "1", "channel": self.channel_name, "last_seen": now,
                  "connected_at": now}
        before = await live.connect(self.charge_point_id, fields, began=self.began)
        if before is None:
            logger.info("%s: a handshake that began %.1f s ago refused: a connection begun since holds the charger",
                        self.charge_point_id, time.time() - self.began)
            await self.close()  # before accept(): 403, to a charger that most likely stopped waiting for it
            return
        self.memory.live_loaded(before, fields)
        self.last_touch = float(now)
        older = before.get("channel", "")
        if before.get("connected") == "1" and older and older != self.channel_name:
            # The live hash names the charger's connection (its channel): commands go to it, and an older one
            # still open (in any process) closes when it gets this. Nothing to say when the last one left
            # cleanly. Where Redis lost the hash, an older connection finds at its next touch that the hash is
            # no longer its own, and closes then.
            await send_to(self.channel_layer, older, {"type": "ocpp.replaced", "by": self.channel_name})
        self.connection = _Connection(self)
        self.central = CentralSystem(self, self.connection)
        self.tasks = [asyncio.ensure_future(self.central.start()), asyncio.ensure_future(self.command_worker())]
        self.accepted = True  # from here on, disconnect() cleans up
        await self.accept(subprotocol=handshake.SUBPROTOCOL)
        logger.info("%s connected from %s", self.charge_point_id, remote)

    async def disconnect(self, code: int) -> None:
        if not getattr(self, "accepted", False):
            return
        self.boot_done()
        for task in [*self.tasks, self.configure_task]:
            if task is not None:
                task.cancel()
        if self.current_command is not None:  # sent, and the answer will never come on this socket
            self.reply(self.current_command, {"status": "not_connected"})
        while not self.commands.empty():
            self.reply(self.commands.get_nowait(), {"status": "not_connected"})
        with contextlib.suppress(Exception):
            await framelog.writer().flush()
        now = int(time.time())
        await live.release(self.charge_point_id, self.channel_name, now)
        await self.db(services.charger_record_seen, charge_point_pk=self.ctx.pk, at=timezone.now())
        logger.info("%s disconnected (%s)", self.charge_point_id, code)

    # --- frames ----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        if self.connection.inbox.qsize() >= MAX_INBOX:
            await self.cut_off(f"{MAX_INBOX} frames waiting without the charger waiting for answers")
            return
        if text_data is None:
            logger.info("%s: binary frame ignored", self.charge_point_id)
            return
        kind, unique_id, action = _frame_meta(text_data)
        if kind == MessageType.Call:
            self.in_flight[unique_id] = action
        else:
            action = self.in_flight.pop(unique_id, "")
        committed = self.log_frame("in", text_data, kind, unique_id, action)
        if kind == MessageType.Call:
            self.commits[unique_id] = committed
        await self.touch()
        if self.replaced:  # a newer connection holds the charger: it sends this again there
            return
        self.connection.inbox.put_nowait(text_data)

    async def send_frame(self, text: str) -> None:
        kind, unique_id, action = _frame_meta(text)
        committed = self.commits.pop(unique_id, None) if kind != MessageType.Call else None
        if committed is not None:
            # The answer to a CALL goes only once the CALL's frame is in the log (group commit).
            try:
                await committed
            except Exception:
                if kind == MessageType.CallResult:
                    logger.warning("%s: %s not stored; answering InternalError", self.charge_point_id, action)
                    text = CallError(unique_id, "InternalError", "The message could not be stored; send it again.",
                                     {}).to_json()
                    kind = MessageType.CallError
        if kind == MessageType.Call:
            self.in_flight[unique_id] = action
        else:
            action = self.in_flight.pop(unique_id, "")
        self.log_frame("out", text, kind, unique_id, action)
        await self.send(text_data=text)

    def log_frame(self, direction: str, raw: str, kind: int | None, unique_id: str, action: str) -> asyncio.Future:
        return framelog.writer().add_frame(
            self.schema, charge_point_id=self.charge_point_id, direction=direction, raw=raw, at=timezone.now(),
            message_type=kind, action=action, unique_id=unique_id,
        )

    async def touch(self) -> None:
        now = time.time()
        if self.marked_offline:
            self.marked_offline = False
            await self.db(services.charger_mark_online, charge_point_pk=self.ctx.pk,
                          charge_point_id=self.charge_point_id)
        if now - self.last_touch >= TOUCH_EVERY_S:
            self.last_touch = now
            fields = {"last_seen": str(int(now)), "connected": "1"}
            outcome = await live.touch(self.charge_point_id, self.channel_name, fields)
            if outcome == "replaced":
                await self.close_replaced()
                return
            if outcome == "lost":
                # The hash was gone (Redis restarted: it keeps nothing on disk): write back all this connection
                # knows, so that the building's pages and its balancer see the charger again within seconds.
                logger.info("%s: live state lost; written again", self.charge_point_id)
                await live.update(self.charge_point_id, self.memory.live)
            self.memory.live_written(fields)

    async def live_update(self, fields: dict[str, str | int]) -> None:
        """Write to the live state what it does not hold yet (a reconnect repeats statuses it already holds)."""
        news = self.memory.live_news(fields)
        if news:
            await live.update(self.charge_point_id, news)
            self.memory.live_written(news)

    async def unsolicited_answer(self, unique_id: str) -> None:
        """An answer to no call of ours (or one we gave up on): dropped; a stream of them ends the connection."""
        logger.info("%s: dropped an answer to no outstanding call (%r)", self.charge_point_id, unique_id[:64])
        if not self.unsolicited_budget.take(time.monotonic()):
            await self.cut_off(f"more than {UNSOLICITED_BURST} answers to calls the platform did not make")

    async def cut_off(self, reason: str) -> None:
        """Close a connection that misbehaves, with the reason logged and an alert for the managers.

        Whatever was acknowledged is already committed (group commit); frames not yet answered are not
        acknowledged, so the charger sends them again when it reconnects.
        """
        if self.closing:
            return
        self.closing = True
        logger.warning("%s: connection closed: %s", self.charge_point_id, reason)
        try:
            await self.db(alert_raise, kind=Alert.Kind.CHARGER_MISBEHAVING, charge_point_id=self.charge_point_id,
                          message=f"{self.charge_point_id} was disconnected: {reason}"[:300],
                          details={"reason": reason})
        except Exception:
            logger.exception("%s: could not raise the alert", self.charge_point_id)
        await self.close(code=1008)  # policy violation

    # --- channel-layer events --------------------------------------------------------

    async def ocpp_replaced(self, event: dict) -> None:
        if event["by"] == self.channel_name or self.replaced:
            return
        await self.close_replaced()

    async def close_replaced(self) -> None:
        if self.replaced:
            return
        self.replaced = True
        logger.info("%s: replaced by a new connection", self.charge_point_id)
        await self.close(code=1000)

    async def ocpp_offline(self, event: dict) -> None:
        """The watchdog marked this charger offline while its socket stayed open."""
        self.marked_offline = True

    async def ocpp_command(self, event: dict) -> None:
        command = Command(
            action=event["action"], payload=event.get("payload") or {}, deadline=event["deadline"],
            reply_to=event.get("reply_to", ""), command_id=event.get("command_id", ""),
        )
        if self.replaced:  # sent just before a newer connection took over: the caller may try again
            self.reply(command, {"status": "not_connected"})
            return
        if event.get("schema") != self.schema:
            # Meant for another building's charger of the same id (moved while this connection stayed
            # open): never send it another building's commands or cards. send_command checks this too.
            logger.warning("%s: refused a command %s meant for another building", self.charge_point_id,
                           command.action)
            self.reply(command, {"status": "wrong_building"})
            return
        self.commands.put_nowait(command)

    # --- server-initiated calls ------------------------------------------------------

    async def command_worker(self) -> None:
        while True:
            command = self.current_command = await self.commands.get()
            remaining = command.deadline - time.time()
            if remaining <= 0:
                result: dict[str, Any] = {"status": "timeout", "sent": False}
            else:
                try:
                    result = await self.central.call_raw(command.action, command.payload, remaining)
                except Exception as error:
                    logger.exception("%s: command %s failed", self.charge_point_id, command.action)
                    result = {"status": "error", "error_code": "InternalError", "description": str(error)}
            self.current_command = None
            self.reply(command, result)

    def reply(self, command: Command, result: dict[str, Any]) -> None:
        if command.future is not None and not command.future.done():
            command.future.set_result(result)
        if command.reply_to:
            message = {"type": "ocpp.command.result", "command_id": command.command_id, **result}
            task = asyncio.ensure_future(self.channel_layer.send(command.reply_to, message))
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def internal_command(self, action: str, payload: dict, timeout: float | None = None) -> dict[str, Any]:
        """A call of the platform's own (after boot), queued like any other command."""
        future = asyncio.get_running_loop().create_future()
        self.commands.put_nowait(Command(action, payload, time.time() + (timeout or settings.OCPP_RESPONSE_TIMEOUT),
                                         future=future))
        return await future

    def start_configuration(self) -> None:
        if self.configure_task is not None and not self.configure_task.done():
            self.configure_task.cancel()
        self.configure_task = asyncio.ensure_future(self.configure_after_boot())
        self.configure_task.add_done_callback(lambda _: self.boot_done())

    def boot_done(self) -> None:
        """The boot and the configuration after it are over: its place in the boots' gate is free."""
        if self.booting:
            self.booting = False
            admission.boots.leave(time.monotonic())

    async def configure_after_boot(self) -> None:
        """Read the charger's configuration once per boot and ask for the metering the platform needs."""
        result = await self.internal_command("GetConfiguration", {})
        if result["status"] != "ok":
            logger.warning("%s: GetConfiguration failed: %s", self.charge_point_id, result)
            return
        known = {
            item["key"]: {"value": item.get("value"), "readonly": bool(item.get("readonly"))}
            for item in result["payload"].get("configurationKey", [])
            if item.get("key") in CONFIGURATION_KEYS_KEPT
        }
        accepted: dict[str, str] = {}
        for change in measurands.metering_changes(known, sample_interval_s=settings.OCPP_METER_VALUE_SAMPLE_INTERVAL):
            for value in change.choices:  # the next choice only when the charger refuses this one
                if await self.change_configuration(change.key, value) == "Accepted":
                    accepted[change.key] = value
                    break
        await self.db(services.charger_store_configuration, charge_point_pk=self.ctx.pk,
                      configuration=measurands.configuration_after(known, accepted))

    async def change_configuration(self, key: str, value: str) -> str:
        result = await self.internal_command("ChangeConfiguration", {"key": key, "value": value})
        status = result.get("payload", {}).get("status", result["status"])
        if status != "Accepted":
            logger.info("%s: ChangeConfiguration %s=%s answered %s", self.charge_point_id, key, value, status)
        return status

    # --- helpers ---------------------------------------------------------------------

    async def db(self, fn, *args, **kwargs):
        """Run ``fn`` in the charger's condominium schema on one of the OCPP database threads."""
        return await database.run_in_schema(self.schema, fn, *args, **kwargs)

    async def session_for_meter_values(self, connector_number: int, transaction_id: int | None) -> int | None:
        """The session MeterValues belong to, from memory when possible."""
        if transaction_id is not None and transaction_id > 0:
            known = self.memory.session_with(transaction_id)
            if known is not None:
                return known.session_pk
            # A session started before this connection, or already stopped (late values): ask the database.
            return await self.db(selectors.meter_values_session_for, charge_point_pk=self.ctx.pk,
                                 connector_number=connector_number, transaction_id=transaction_id)
        session = self.memory.session_on(connector_number)
        if transaction_id is not None and session is not None:
            logger.warning("%s: MeterValues with transactionId %s attached to open session %s",
                           self.charge_point_id, transaction_id, session.transaction_id)
        return session.session_pk if session is not None and connector_number else None
