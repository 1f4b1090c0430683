"""Commands to chargers from any process (web, worker, shell), through the channel layer.

    await send_command("TEST-MAPLE-1", "RemoteStartTransaction", {"idTag": "04A1B2C3D4", "connectorId": 1},
                       schema_name="maple_court")
    send_command_sync("TEST-MAPLE-1", "Reset", {"type": "Soft"}, schema_name="maple_court")

The command goes to the channel of the charger's connection, as the live state
names it (apps/ocpp/live.py); the daphne process that holds the connection
queues it behind any other call to that charger (one outstanding CALL at a
time), validates it against the OCPP 1.6 schema, sends it and replies on a
channel of this process with the charger's answer.

A command names the building (schema) it acts for, and only a connection of that
building takes it: a chargePointId moved to another building while a connection
of the old one is still open must not receive the other building's commands or
card lists. It is checked twice: here against the live state, and by the
connection itself (which answers "wrong_building").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings

from apps.ocpp import live
from apps.ocpp.delivery import send_to

logger = logging.getLogger(__name__)

LAYER_CLOSE_TIMEOUT_S = 10.0

SERVER_ACTIONS = frozenset({
    "RemoteStartTransaction", "RemoteStopTransaction", "ChangeAvailability", "ChangeConfiguration",
    "GetConfiguration", "Reset", "UnlockConnector", "ClearCache", "TriggerMessage", "SetChargingProfile",
    "ClearChargingProfile", "GetCompositeSchedule", "SendLocalList", "GetLocalListVersion", "ReserveNow",
    "CancelReservation", "GetDiagnostics", "UpdateFirmware", "DataTransfer",
})


class CommandError(Exception):
    pass


class ChargerNotConnected(CommandError):
    pass


class ChargerOfAnotherBuilding(ChargerNotConnected):
    """Connected, but the live connection belongs to another building than the one the command is for.

    For the building that sent the command the charger is not connected: callers that handle
    ChargerNotConnected need nothing more. The message does not name the other building.
    """


class CommandTimeout(CommandError):
    pass


class CommandRejected(CommandError):
    """The charger answered with a CALLERROR, or the payload is not valid OCPP 1.6."""

    def __init__(self, error_code: str, description: str = ""):
        super().__init__(f"{error_code}: {description}")
        self.error_code = error_code
        self.description = description


class InvalidCommand(CommandRejected):
    """Not sent: the action is not one a central system sends, or the payload is not valid OCPP 1.6."""


async def send_command(
    charge_point_id: str, action: str, payload: dict | None = None, timeout: float | None = None, *,
    schema_name: str, layer: Any = None,
) -> dict[str, Any]:
    """Send ``action`` to the charger, for the building ``schema_name``, and return its answer's payload.

    ``layer``: the channel layer to use (default: the process's). Code that runs each batch of commands in
    an event loop of its own (``async_to_sync`` in a Celery worker) passes one made for that loop
    (``loop_channel_layer``): the process's layer keeps its receive locks between loops, and one left held
    when a loop ended blocks the next loop's receives for ever."""
    if action not in SERVER_ACTIONS:
        raise InvalidCommand("NotSupported", f"{action} is not a central system action")
    if not schema_name:
        raise ValueError("send_command needs the schema name of the building it acts for")
    timeout = timeout or settings.OCPP_RESPONSE_TIMEOUT
    state = await live.read(charge_point_id)
    if state.get("connected") != "1" or not state.get("channel"):
        raise ChargerNotConnected(charge_point_id)
    if state.get("schema") != schema_name:
        raise _of_another_building(charge_point_id, schema_name)
    layer = layer or get_channel_layer()
    # The default "specific." prefix: channels-redis then reads it in the same loop as this process's
    # consumers. Another prefix would have its own blocking read that starves theirs for seconds.
    reply_to = await layer.new_channel()
    # To the connection the live state names (its channel, in whichever process holds it).
    delivered = await send_to(layer, state["channel"], {
        "type": "ocpp.command", "action": action, "payload": payload or {}, "reply_to": reply_to,
        "deadline": time.time() + timeout, "command_id": uuid.uuid4().hex, "schema": schema_name,
    })
    if not delivered:
        raise CommandTimeout(f"{charge_point_id} did not get {action}: its connection's process is not reading")
    try:
        # A little longer than the deadline: the connection answers "timeout" itself when it can.
        answer = await asyncio.wait_for(layer.receive(reply_to), timeout + 2)
    except TimeoutError:
        raise CommandTimeout(f"{charge_point_id} did not answer {action} within {timeout}s") from None
    status = answer.get("status")
    if status == "ok":
        return answer["payload"]
    if status == "timeout":
        raise CommandTimeout(f"{charge_point_id} did not answer {action} within {timeout}s")
    if status == "not_connected":
        raise ChargerNotConnected(charge_point_id)
    if status == "wrong_building":
        # Also possible for a moment while a moved charger's new connection replaces the old one: the old one
        # may still be named in the live state. The caller may retry; nothing went astray.
        raise _of_another_building(charge_point_id, schema_name)
    if status == "invalid":
        raise InvalidCommand(answer.get("error_code", "FormationViolation"), answer.get("description", ""))
    raise CommandRejected(answer.get("error_code", "GenericError"), answer.get("description", ""))


@contextlib.asynccontextmanager
async def loop_channel_layer(what: str) -> AsyncIterator[Any]:
    """A channel layer of its own for one event loop, closed when the block ends (at most LAYER_CLOSE_TIMEOUT_S;
    ``what`` names the user in the warning if it does not close). Not for daphne, whose consumers share the
    process's layer and its one reader."""
    layer = new_channel_layer()
    try:
        yield layer
    finally:
        await close_channel_layer(layer, what)


def new_channel_layer() -> Any:
    """A channel layer of its own, for the one event loop that will use it (see ``send_command``'s ``layer``)."""
    return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)


async def close_channel_layer(layer: Any, what: str) -> None:
    """Close a layer made by ``new_channel_layer``, in its loop (at most LAYER_CLOSE_TIMEOUT_S)."""
    try:
        await asyncio.wait_for(layer.close_pools(), LAYER_CLOSE_TIMEOUT_S)
    except TimeoutError:
        logger.warning("%s: its channel layer did not close within %s s", what, LAYER_CLOSE_TIMEOUT_S)


def send_command_sync(
    charge_point_id: str, action: str, payload: dict | None = None, timeout: float | None = None, *,
    schema_name: str,
) -> dict[str, Any]:
    """``send_command`` from sync code (a worker's task, a view, a shell), through a channel layer made for the
    call and closed after it: the process's layer keeps its receive locks from one event loop into the next
    (each ``async_to_sync`` call may run in a new one), and the threads of a worker (the "chargers" queue's)
    would share it: "Two event loops are trying to receive() on one channel layer at once"."""
    return async_to_sync(_send_in_own_layer)(charge_point_id, action, payload, timeout, schema_name)


async def _send_in_own_layer(charge_point_id: str, action: str, payload: dict | None, timeout: float | None,
                             schema_name: str) -> dict[str, Any]:
    async with loop_channel_layer(f"{action} to {charge_point_id}") as layer:
        return await send_command(charge_point_id, action, payload, timeout, schema_name=schema_name, layer=layer)


def _of_another_building(charge_point_id: str, schema_name: str) -> ChargerOfAnotherBuilding:
    logger.warning("%s: a command for %s refused: the live connection belongs to another building",
                   charge_point_id, schema_name)
    return ChargerOfAnotherBuilding(f"{charge_point_id} is not connected to this building")


# (schema name of the building, chargePointId, action, payload) -> the charger's answer. The local-list sync and
# reservations take one, so that their tests can stand in for the charger.
Send = Callable[[str, str, str, dict], dict[str, Any]]


def send_through_channel_layer(schema_name: str, charge_point_id: str, action: str, payload: dict) -> dict[str, Any]:
    """A ``Send`` that reaches the real charger (``send_command_sync``)."""
    return send_command_sync(charge_point_id, action, payload, schema_name=schema_name)
