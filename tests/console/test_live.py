"""The console's live view through a real daphne: a manager's browser socket gets the picture, then a charger's
new status without reloading; nobody else gets a socket at all."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import websockets
import websockets.exceptions
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from tests import factories
from tests.ocpp.charger import FakeCharger, ws_headers
from tests.servers import daphne_running

HOST = "maple-court.localhost"


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    # Pushes every 200 ms and checks the viewer's right every second, so that the test sees both soon.
    with daphne_running(tmp_path_factory, env={"CONSOLE_PUSH_MS": "200", "CONSOLE_RECHECK_S": "1"}) as server:
        yield server


def session_cookie(user, host: str = HOST) -> tuple[Client, str]:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def console(daphne, cookie: str | None, *, host: str = HOST, origin: str | None = None):
    headers = {"Origin": origin if origin is not None else f"http://{host}:{daphne.port}"}
    if cookie:
        headers["Cookie"] = cookie
    if origin == "":
        headers.pop("Origin")
    return websockets.connect(f"ws://{host}:{daphne.port}/ws/console/", host="127.0.0.1", port=daphne.port,
                              additional_headers=headers, open_timeout=10)


async def next_update(ws, wanted, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01)))
        assert message["type"] == "update"
        if wanted(message):
            return message


def row(message: dict, key: str) -> dict | None:
    return next((r for r in message.get("connectors", []) if r["key"] == key), None)


async def test_a_manager_sees_a_charger_start_charging_without_reloading(daphne, world, committed):
    cp_id = f"LIVE-{uuid.uuid4().hex[:8].upper()}"
    await sync_to_async(factories.charger)(world.maple, cp_id)
    _, cookie = await sync_to_async(session_cookie)(world.acme_manager)
    async with console(daphne, cookie) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["full"] is True
        assert row(first, f"{cp_id}#1") is not None and row(first, "TEST-MAPLE-1#1") is not None
        assert not any(r["key"].startswith("TEST-HARBOR") for r in first["connectors"])
        assert row(first, f"{cp_id}#1")["online"] is False
        async with websockets.connect(f"{daphne.url}{cp_id}", subprotocols=["ocpp1.6"],
                                      additional_headers=ws_headers(cp_id)) as charger_ws:
            charger = FakeCharger(charger_ws)
            await charger.boot()
            await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
            online = await next_update(ws, lambda m: (row(m, f"{cp_id}#1") or {}).get("status") == "Available")
            assert row(online, f"{cp_id}#1")["online"] is True
            await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
            await charger.call("MeterValues", {"connectorId": 1, "meterValue": [{
                "timestamp": "2026-03-01T20:00:00Z", "sampledValue": [
                    {"value": "15.9", "measurand": "Current.Import", "phase": "L1", "unit": "A"}]}]})
            charging = await next_update(
                ws, lambda m: (row(m, f"{cp_id}#1") or {}).get("currents_a", [None])[0] == "15.9")
            assert row(charging, f"{cp_id}#1")["status"] == "Charging"
            # The supply carries it: the node's EV load moved with it, in the same push or an earlier one.
            await charger.settle(0.1)


async def test_the_socket_closes_once_the_viewer_has_logged_out(daphne, world, committed):
    client, cookie = await sync_to_async(session_cookie)(world.maple_board)
    async with console(daphne, cookie) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["full"] is True
        await sync_to_async(client.logout)()
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.parametrize("who, host, origin", [
    ("nobody", HOST, None),  # no session
    ("maple_resident", HOST, None),  # a resident of the building: not the console's
    ("harbor_manager", HOST, None),  # a manager of another company, on this building's host
    ("oak_resident", HOST, None),
    ("acme_manager", HOST, "http://harbor-view.localhost"),  # a page of another host opens it
    ("acme_manager", HOST, "http://evil.example"),
    ("acme_manager", HOST, ""),  # no Origin at all
    ("acme_manager", "unknown.localhost", None),  # a host that is no building
])
async def test_everyone_else_is_refused_at_the_handshake(daphne, world, committed, who, host, origin):
    cookie = None
    if who != "nobody":
        _, cookie = await sync_to_async(session_cookie)(getattr(world, who), host)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with console(daphne, cookie, host=host, origin=origin) as ws:
            await ws.recv()
    assert refused.value.response.status_code == 403
    assert "Traceback" not in daphne.read_log()
