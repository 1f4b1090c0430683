"""Server-initiated calls through the channel layer (one process; see test_two_processes for two)."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from apps.charging.models import ChargePoint
from apps.core.tenants import run_in_schema
from apps.ocpp import live, tasks
from apps.ocpp.commands import (
    ChargerNotConnected,
    ChargerOfAnotherBuilding,
    CommandTimeout,
    InvalidCommand,
    send_command,
    send_through_channel_layer,
)
from tests import factories
from tests.ocpp.conftest import PASSWORD

PAYLOADS = {
    "RemoteStartTransaction": {"idTag": "04A1B2C3D4", "connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 12},
    "ChangeAvailability": {"connectorId": 0, "type": "Inoperative"},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "120"},
    "GetConfiguration": {"key": ["HeartbeatInterval"]},
    "Reset": {"type": "Soft"},
    "UnlockConnector": {"connectorId": 1},
    "ClearCache": {},
    "TriggerMessage": {"requestedMessage": "StatusNotification", "connectorId": 1},
    "SetChargingProfile": {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}}},
    "ClearChargingProfile": {"id": 1},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
    "SendLocalList": {"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
        {"idTag": "04A1B2C3D4", "idTagInfo": {"status": "Accepted"}}]},
    "GetLocalListVersion": {},
    "ReserveNow": {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "04A1B2C3D4",
                   "reservationId": 5},
    "CancelReservation": {"reservationId": 5},
    "GetDiagnostics": {"location": "ftp://example.invalid/diag"},
    "UpdateFirmware": {"location": "https://example.invalid/fw.bin", "retrieveDate": "2030-01-01T00:00:00Z"},
}
ANSWERS = {
    "GetConfiguration": {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]},
    "GetLocalListVersion": {"listVersion": 2},
    "GetDiagnostics": {"fileName": "diag.tgz"},
    "UpdateFirmware": {},
    "UnlockConnector": {"status": "Unlocked"},
    "RemoteStartTransaction": {"status": "Accepted"},
    "GetCompositeSchedule": {"status": "Rejected"},
}


async def test_every_server_action_reaches_the_charger_and_the_answer_comes_back(maple_schema, connected):
    connected.answers.update(ANSWERS)
    pump = asyncio.ensure_future(connected.settle(30))
    for action, payload in PAYLOADS.items():
        answer = await send_command(connected.charge_point_id, action, payload, timeout=5, schema_name=maple_schema)
        assert answer == ANSWERS.get(action, {"status": "Accepted"}), action
    pump.cancel()
    assert [a for a, _ in connected.received_calls] == list(PAYLOADS)


async def test_commands_are_queued_one_outstanding_call_at_a_time(maple_schema, connected):
    pump = asyncio.ensure_future(connected.settle(10))
    answers = await asyncio.gather(*(
        send_command(connected.charge_point_id, "ClearCache", {}, timeout=5, schema_name=maple_schema)
        for _ in range(5)))
    pump.cancel()
    assert answers == [{"status": "Accepted"}] * 5


async def test_silent_charger_times_out_and_invalid_payloads_are_refused(maple_schema, connected):
    connected.answers["Reset"] = None  # never answers
    pump = asyncio.ensure_future(connected.settle(10))
    with pytest.raises(CommandTimeout):
        await send_command(connected.charge_point_id, "Reset", {"type": "Hard"}, timeout=1, schema_name=maple_schema)
    with pytest.raises(InvalidCommand):
        await send_command(connected.charge_point_id, "Reset", {"type": "Sideways"}, timeout=2,
                           schema_name=maple_schema)
    pump.cancel()


async def test_charger_not_connected(maple_schema, charger_id):
    with pytest.raises(ChargerNotConnected):
        await send_command(charger_id, "ClearCache", {}, timeout=1, schema_name=maple_schema)


async def test_a_command_for_another_building_is_refused_before_it_is_sent(connected, world):
    oak = world.oak.schema_name
    with pytest.raises(ChargerOfAnotherBuilding) as refused:
        await send_command(connected.charge_point_id, "ClearCache", {}, timeout=2, schema_name=oak)
    assert oak not in str(refused.value)  # the other building is not named
    assert isinstance(refused.value, ChargerNotConnected)  # callers that handle "not connected" need no change
    with pytest.raises(ValueError, match="schema name"):
        await send_command(connected.charge_point_id, "ClearCache", {}, timeout=2, schema_name="")
    await connected.settle(0.3)
    assert connected.received_calls == []


async def test_a_charger_id_moved_to_another_building_gets_none_of_its_commands_or_cards(
    maple_schema, connected, world
):
    """The id is moved to Oak Tower (out of Maple Court's file, into Oak Tower's) while Maple Court's connection is
    still open."""
    oak = world.oak.schema_name
    charger_id = connected.charge_point_id
    await sync_to_async(factories.charger_retire)(world.maple, charger_id)
    await sync_to_async(factories.charger)(world.oak, charger_id, PASSWORD)
    oak_pk = await run_in_schema(oak, lambda: ChargePoint.objects.get(charge_point_id=charger_id).pk)
    pump = asyncio.ensure_future(connected.settle(10))
    try:
        with pytest.raises(ChargerOfAnotherBuilding):
            await send_command(charger_id, "RemoteStartTransaction", {"idTag": "0B0B0B0B", "connectorId": 1},
                               timeout=2, schema_name=oak)
        # Oak Tower's card list is not sent: the task finds the charger not connected to Oak Tower...
        outcome = await sync_to_async(tasks.sync_local_lists, thread_sensitive=False)(oak, [oak_pk])
        assert outcome == {charger_id: "not-connected"}
        # ...and the sync's own sender refuses too.
        with pytest.raises(ChargerOfAnotherBuilding):
            await sync_to_async(send_through_channel_layer, thread_sensitive=False)(
                oak, charger_id, "SendLocalList", {"listVersion": 1, "updateType": "Full",
                                                   "localAuthorizationList": [{"idTag": "0B0B0B0B"}]})
        # The connection's own building still reaches it.
        assert await send_command(charger_id, "ClearCache", {}, timeout=5, schema_name=maple_schema) == {
            "status": "Accepted"}
    finally:
        pump.cancel()
    assert [action for action, _ in connected.received_calls] == ["ClearCache"]


async def test_the_connection_refuses_a_command_for_another_building_itself(maple_schema, connected, world):
    """Defence in depth: even when the live state says Oak Tower, Maple Court's connection does not send it."""
    charger_id, oak = connected.charge_point_id, world.oak.schema_name
    await live.update(charger_id, {"schema": oak})
    pump = asyncio.ensure_future(connected.settle(10))
    try:
        started = time.monotonic()
        with pytest.raises(ChargerOfAnotherBuilding):
            await send_command(charger_id, "Reset", {"type": "Soft"}, timeout=5, schema_name=oak)
        assert time.monotonic() - started < 4  # answered by the connection, not a timeout
    finally:
        pump.cancel()
        await live.update(charger_id, {"schema": maple_schema})
    assert connected.received_calls == []
