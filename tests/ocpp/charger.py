"""A scripted charger for tests: speaks OCPP-J frames over a WebsocketCommunicator or a websockets client.

It answers the platform's calls (GetConfiguration, ChangeConfiguration...) on its
own and records them, so tests can look at what the platform asked.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from typing import Any

DEFAULT_ANSWERS: dict[str, Any] = {
    "GetConfiguration": {"configurationKey": [
        {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"},
        {"key": "MeterValuesSampledData", "readonly": False, "value": "Energy.Active.Import.Register"},
        {"key": "NumberOfConnectors", "readonly": True, "value": "2"},
        {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
        {"key": "SomeVendorKey", "readonly": False, "value": "x"},
    ]},
    "ChangeConfiguration": {"status": "Accepted"},
}


def ws_headers(charge_point_id: str, password: str | None = None) -> dict[str, str]:
    """Basic-auth headers for a websockets client (the tests' own chargers' password by default)."""
    from tests.ocpp.conftest import PASSWORD

    token = base64.b64encode(f"{charge_point_id}:{password or PASSWORD}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def basic_auth(charge_point_id: str, password: str) -> tuple[bytes, bytes]:
    token = base64.b64encode(f"{charge_point_id}:{password}".encode()).decode()
    return (b"authorization", f"Basic {token}".encode())


HOLD = object()  # an answer function returns this to keep the answer back until ``release``


class FakeCharger:
    def __init__(self, transport, answers: dict[str, Any] | None = None):
        self.transport = transport  # WebsocketCommunicator or a websockets ClientConnection
        self.answers = {**DEFAULT_ANSWERS, **(answers or {})}
        self.received_calls: list[tuple[str, dict]] = []
        self.received_at: list[float] = []  # time.time() of each call received, beside received_calls
        self._ids = itertools.count(1)
        self.results: dict[str, list] = {}
        self.held: list[tuple[str, str, dict]] = []  # (unique id, action, payload) of calls not answered yet

    async def release(self, answer: dict) -> None:
        """Answer the oldest call held back (see HOLD) with ``answer``."""
        unique_id, _, _ = self.held.pop(0)
        await self._send(json.dumps([3, unique_id, answer]))

    async def _send(self, text: str) -> None:
        if hasattr(self.transport, "send_to"):
            await self.transport.send_to(text_data=text)
        else:
            await self.transport.send(text)

    async def _recv(self, timeout: float) -> str:
        if hasattr(self.transport, "receive_from"):
            # receive_from() cancels the application when it times out; look first.
            if await self.transport.receive_nothing(timeout=timeout, interval=0.01):
                raise TimeoutError
            return await self.transport.receive_from(timeout=1)
        return await asyncio.wait_for(self.transport.recv(), timeout)

    async def pump(self, timeout: float = 3.0) -> list:
        """Read one frame; answer it if it is a CALL. Returns the frame."""
        frame = json.loads(await self._recv(timeout))
        if frame[0] == 2:
            _, unique_id, action, payload = frame
            self.received_calls.append((action, payload))
            self.received_at.append(time.time())
            answer = self.answers.get(action, {"status": "Accepted"})
            if callable(answer):
                answer = answer(payload)
            if answer is HOLD:
                self.held.append((unique_id, action, payload))
            elif answer is not None:
                await self._send(json.dumps([3, unique_id, answer]))
        else:
            self.results[frame[1]] = frame
        return frame

    async def send_raw(self, text: str, unique_id: str | None = None, timeout: float = 5.0) -> list:
        """Send any text; wait for the answer with ``unique_id`` (or the next non-CALL frame)."""
        await self._send(text)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if unique_id is not None and unique_id in self.results:
                return self.results.pop(unique_id)
            frame = await self.pump(max(deadline - loop.time(), 0.01))
            if frame[0] != 2 and unique_id is None:
                self.results.pop(frame[1], None)
                return frame

    async def call(self, action: str, payload: dict, unique_id: str | None = None) -> list:
        unique_id = unique_id or f"t{next(self._ids)}"
        return await self.send_raw(json.dumps([2, unique_id, action, payload]), unique_id)

    async def settle(self, seconds: float = 0.5) -> None:
        """Answer whatever the platform calls for ``seconds``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while loop.time() < deadline:
            try:
                await self.pump(max(deadline - loop.time(), 0.01))
            except TimeoutError:
                return

    async def boot(self) -> list:
        return await self.call("BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "Wallbox 22",
                                                    "chargePointSerialNumber": "SN-1", "firmwareVersion": "1.2.3"})


class LocalListMemory:
    """A charger's local authorization list, kept the way OCPP 1.6 says, checking every SendLocalList.

    Plug it into a FakeCharger: ``charger.answers.update(memory.answers())``. Anything the spec forbids
    (a version that does not increase, a call longer than SendLocalListMaxLength, a list longer than
    LocalAuthListMaxLength, an entry without idTagInfo in a Full update) is collected in ``violations``.
    """

    def __init__(self, max_length: int = 50, send_max_length: int = 10, version: int = 0,
                 entries: dict[str, dict] | None = None):
        self.max_length = max_length
        self.send_max_length = send_max_length
        self.version = version
        self.entries: dict[str, dict] = dict(entries or {})
        self.violations: list[str] = []
        self.updates: list[tuple[str, int, int]] = []  # (updateType, listVersion, entries)
        self.refuse: list[str] = []  # statuses to answer to the next SendLocalList calls, in order

    def configuration(self) -> list[dict]:
        return [
            {"key": "LocalAuthListEnabled", "readonly": False, "value": "true"},
            {"key": "LocalAuthListMaxLength", "readonly": True, "value": str(self.max_length)},
            {"key": "SendLocalListMaxLength", "readonly": True, "value": str(self.send_max_length)},
            {"key": "SupportedFeatureProfiles", "readonly": True,
             "value": "Core,FirmwareManagement,LocalAuthListManagement,Reservation,SmartCharging,RemoteTrigger"},
        ]

    def answers(self) -> dict[str, Any]:
        return {
            "GetConfiguration": {"configurationKey": [*DEFAULT_ANSWERS["GetConfiguration"]["configurationKey"],
                                                      *self.configuration()]},
            "GetLocalListVersion": lambda payload: {"listVersion": self.version},
            "SendLocalList": self.send_local_list,
        }

    def send_local_list(self, payload: dict) -> dict:
        version, update_type = payload["listVersion"], payload["updateType"]
        items = payload.get("localAuthorizationList") or []
        self.updates.append((update_type, version, len(items)))
        if self.refuse:
            return {"status": self.refuse.pop(0)}
        if len(items) > self.send_max_length:
            self.violations.append(f"{len(items)} entries in one call (max {self.send_max_length})")
        if version <= self.version:
            self.violations.append(f"listVersion {version} after {self.version}")
        if update_type == "Full":
            if any("idTagInfo" not in item for item in items):
                self.violations.append("Full update with an entry without idTagInfo")
            new = {item["idTag"]: item["idTagInfo"] for item in items}
        else:
            new = dict(self.entries)
            for item in items:
                if "idTagInfo" in item:
                    new[item["idTag"]] = item["idTagInfo"]
                else:
                    new.pop(item["idTag"], None)
        if len(new) > self.max_length:
            self.violations.append(f"list of {len(new)} entries (max {self.max_length})")
            return {"status": "Failed"}
        self.entries, self.version = new, version
        return {"status": "Accepted"}


class ProfileMemory:
    """A charger's charging profiles, kept per connector, with the refusals of a particular model.

    Plug it into a FakeCharger: ``charger.answers.update(memory.answers())``. ``rejects`` names what this
    model answers Rejected to: "TxProfile", "W", "fractional", "zero", "stack" (a level above 0), "everything"; ``rate_units`` is what its
    configuration reports (ChargingScheduleAllowedChargingRateUnit). ``hold`` keeps the answers to the live
    limits (TxProfile) back while set (the charger is slow to answer), see FakeCharger.release.
    """

    def __init__(self, rejects: tuple[str, ...] = (), rate_units: str = "Current,Power", stack_level: int = 8):
        self.rejects = set(rejects)
        self.rate_units = rate_units
        self.stack_level = stack_level
        self.installed: dict[int, dict[int, dict]] = {}  # connector -> chargingProfileId -> profile
        self.refused: list[dict] = []
        self.hold = False

    def answers(self) -> dict[str, Any]:
        return {
            "GetConfiguration": {"configurationKey": [
                *DEFAULT_ANSWERS["GetConfiguration"]["configurationKey"][:3],
                {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": str(self.stack_level)},
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": self.rate_units},
                {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
                {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "10"},
            ]},
            "SetChargingProfile": self.set_charging_profile,
        }

    def refusal(self, profile: dict) -> str | None:
        schedule = profile["chargingSchedule"]
        limits = [period["limit"] for period in schedule["chargingSchedulePeriod"]]
        if "everything" in self.rejects:
            return "everything"
        if "TxProfile" in self.rejects and profile["chargingProfilePurpose"] == "TxProfile":
            return "TxProfile"
        if "W" in self.rejects and schedule["chargingRateUnit"] == "W":
            return "W"
        if "fractional" in self.rejects and any(limit != int(limit) for limit in limits):
            return "fractional"
        if "zero" in self.rejects and any(limit == 0 for limit in limits):
            return "zero"
        if "stack" in self.rejects and profile["stackLevel"] > 0:
            return "stack level above 0, whatever ChargeProfileMaxStackLevel says"
        if profile["stackLevel"] > self.stack_level:
            return "stack level"
        return None

    def set_charging_profile(self, payload: dict):
        profile = payload["csChargingProfiles"]
        if self.refusal(profile):
            self.refused.append(payload)
            return {"status": "Rejected"}
        connector = self.installed.setdefault(payload["connectorId"], {})
        for other_id, other in list(connector.items()):
            if other["chargingProfilePurpose"] == profile["chargingProfilePurpose"] and \
                    other["stackLevel"] == profile["stackLevel"]:
                del connector[other_id]  # OCPP 1.6, 3.13.3: same purpose and stack level replaces
        connector[profile["chargingProfileId"]] = profile
        if self.hold and profile["chargingProfilePurpose"] == "TxProfile":
            return HOLD
        return {"status": "Accepted"}

    def limit(self, connector: int, purpose: str = "TxProfile") -> float | None:
        """The first period's limit of the profile of ``purpose`` on the connector."""
        for profile in self.installed.get(connector, {}).values():
            if profile["chargingProfilePurpose"] == purpose:
                return profile["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
        return None


async def connected_charger(daphne, condo, prefix: str, answers: dict[str, Any] | None = None):
    """A new charger of ``condo`` (tests.factories.charger), connected to ``daphne`` and booted: (id, charger, ws)."""
    import uuid

    import websockets
    from asgiref.sync import sync_to_async

    from tests import factories

    cp_id = f"{prefix}-{uuid.uuid4().hex[:8].upper()}"
    await sync_to_async(factories.charger)(condo, cp_id)
    ws = await websockets.connect(f"{daphne.url}{cp_id}", subprotocols=["ocpp1.6"],
                                  additional_headers=ws_headers(cp_id))
    charger = FakeCharger(ws, answers=answers)
    await charger.boot()
    await charger.settle(1.0)  # the configuration the platform asks after boot
    return cp_id, charger, ws


async def while_answering(charger: FakeCharger, call, *args):
    """Run a blocking request (a test client's) in a thread while the charger answers what the platform sends."""
    pump = asyncio.ensure_future(charger.settle(20))
    try:
        return await asyncio.to_thread(call, *args)
    finally:
        pump.cancel()
