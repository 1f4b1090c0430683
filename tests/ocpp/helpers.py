"""Helpers for the OCPP tests that talk to the ASGI app through a WebsocketCommunicator."""

from __future__ import annotations

import copy
import random
import time

from tests.ocpp.charger import FakeCharger


async def closed_within(charger: FakeCharger, seconds: float) -> dict:
    """The websocket.close the platform sent, skipping any frames before it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = await charger.transport.receive_output(timeout=max(deadline - time.monotonic(), 0.01))
        if output["type"] == "websocket.close":
            return output
    raise AssertionError(f"still open after {seconds} s")


# --- fuzzing: valid payloads of every action a charger sends, and values that break them ---------------------

CHARGER_CALLS = {
    "BootNotification": {"chargePointVendor": "Acme", "chargePointModel": "W22", "firmwareVersion": "1.0"},
    "Heartbeat": {},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                           "timestamp": "2026-01-01T00:00:00Z", "info": "ok"},
    "Authorize": {"idTag": "04A1B2C3D4"},
    "StartTransaction": {"connectorId": 1, "idTag": "04A1B2C3D4", "meterStart": 1000,
                         "timestamp": "2026-01-01T00:00:00Z", "reservationId": 5},
    "StopTransaction": {"transactionId": 1, "meterStop": 2000, "timestamp": "2026-01-01T01:00:00Z",
                        "idTag": "04A1B2C3D4", "reason": "Local",
                        "transactionData": [{"timestamp": "2026-01-01T00:30:00Z",
                                             "sampledValue": [{"value": "1500", "unit": "Wh"}]}]},
    "MeterValues": {"connectorId": 1, "transactionId": 1, "meterValue": [
        {"timestamp": "2026-01-01T00:30:00Z", "sampledValue": [
            {"value": "16.1", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "1500", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]},
    "DataTransfer": {"vendorId": "acme", "messageId": "x", "data": "y"},
    "DiagnosticsStatusNotification": {"status": "Idle"},
    "FirmwareStatusNotification": {"status": "Idle"},
}
NASTY_VALUES = [
    "\u0000", "a\u0000b", "", " ", "x" * 5000, "💥", "\ud7ff", -1, 0, 2**31, 2**31 - 1, -(2**31) - 1, 2**53,
    2**63, 10**30, 1.5, -0.0, 1e308, True, None, [], {}, [1, 2], {"a": 1}, "NaN", "Infinity", "-1e309",
    "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
    "2026-13-45T99:99:99Z", "not a date",
]


def paths(value, path=()):
    """Every path into ``value`` (keys and list indexes), the empty path first."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*path, index))


def mutate(payload: dict, rng: random.Random) -> dict:
    """``payload`` with one to three values replaced by a nasty one (or, now and then, removed)."""
    payload = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 3)):
        candidates = [p for p in paths(payload) if p]
        if not candidates:
            break
        path = rng.choice(candidates)
        parent = payload
        for part in path[:-1]:
            parent = parent[part]
        if rng.random() < 0.1 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(NASTY_VALUES))
    return payload
