"""Server-initiated calls through the channel layer (one process; see test_two_processes for two)."""

from __future__ import annotations

import asyncio

import pytest

from apps.ocpp.commands import ChargerNotConnected, CommandTimeout, InvalidCommand, send_command

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


async def test_every_server_action_reaches_the_charger_and_the_answer_comes_back(connected):
    connected.answers.update(ANSWERS)
    pump = asyncio.ensure_future(connected.settle(30))
    for action, payload in PAYLOADS.items():
        answer = await send_command(connected.charge_point_id, action, payload, timeout=5)
        assert answer == ANSWERS.get(action, {"status": "Accepted"}), action
    pump.cancel()
    assert [a for a, _ in connected.received_calls] == list(PAYLOADS)


async def test_commands_are_queued_one_outstanding_call_at_a_time(connected):
    pump = asyncio.ensure_future(connected.settle(10))
    answers = await asyncio.gather(*(send_command(connected.charge_point_id, "ClearCache", {}, timeout=5)
                                     for _ in range(5)))
    pump.cancel()
    assert answers == [{"status": "Accepted"}] * 5


async def test_silent_charger_times_out_and_invalid_payloads_are_refused(connected):
    connected.answers["Reset"] = None  # never answers
    pump = asyncio.ensure_future(connected.settle(10))
    with pytest.raises(CommandTimeout):
        await send_command(connected.charge_point_id, "Reset", {"type": "Hard"}, timeout=1)
    with pytest.raises(InvalidCommand):
        await send_command(connected.charge_point_id, "Reset", {"type": "Sideways"}, timeout=2)
    pump.cancel()


async def test_charger_not_connected(charger_id):
    with pytest.raises(ChargerNotConnected):
        await send_command(charger_id, "ClearCache", {}, timeout=1)
