"""Remote operations from the console, against a real daphne and a charger connected to it: confirmed first,
sent, answered, and kept on the building's trail with who and when; nobody but the company's managers can send
one, and a refusal or a silent charger is recorded as such."""

from __future__ import annotations

import asyncio
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.core.tenants import in_schema
from apps.ocpp.models import RemoteOperation
from tests.ocpp.charger import FakeCharger, connected_charger, while_answering
from tests.servers import daphne_running

HOST = "maple-court.localhost"


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    with daphne_running(tmp_path_factory) as server:
        yield server


def _client(user, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


def _operations(schema: str, cp_id: str) -> list[RemoteOperation]:
    with in_schema(schema):
        return list(RemoteOperation.objects.filter(charge_point_id=cp_id).order_by("id"))


async def _charger(daphne, world, answers=None) -> tuple[str, FakeCharger, object]:
    return await connected_charger(daphne, world.maple, "OP", answers)


async def test_a_manager_confirms_stops_a_residents_session_and_the_trail_keeps_it(daphne, world, committed):
    cp_id, charger, ws = await _charger(daphne, world)
    try:
        await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        started = await charger.call("StartTransaction", {"connectorId": 1, "idTag": "04A1B2C3D4", "meterStart": 100,
                                                          "timestamp": "2026-03-01T20:00:00Z"})
        tx = started[2]["transactionId"]
        manager = await sync_to_async(_client)(world.acme_manager)
        console = (await asyncio.to_thread(manager.get, "/console/")).content.decode()
        assert f'href="operate/{cp_id}/1/"' in console
        menu = (await asyncio.to_thread(manager.get, f"/console/operate/{cp_id}/1/")).content.decode()
        assert all(f'data-op="{key}"' in menu for key in ("stop", "unlock", "unavailable", "soft_reset"))
        path = f"/console/operate/{cp_id}/1/stop/"
        page = await asyncio.to_thread(manager.get, path)
        assert page.status_code == 200
        html = page.content.decode()
        assert "Alice" in html and "101" in html and 'id="confirm-button"' in html
        assert not [a for a, _ in charger.received_calls if a == "RemoteStopTransaction"]  # asking is not sending
        answer = await while_answering(charger, manager.post, path)
        assert answer.status_code == 302 and answer["Location"] == "/console/operations/"
        assert ("RemoteStopTransaction", {"transactionId": tx}) in charger.received_calls
        [operation] = await sync_to_async(_operations)(world.maple.schema_name, cp_id)
        assert (operation.action, operation.payload, operation.outcome) == (
            "RemoteStopTransaction", {"transactionId": tx}, "accepted")
        assert operation.answer == {"status": "Accepted"} and operation.user_email == "manager@acme.test"
        assert operation.via == "console" and operation.connector_number == 1 and operation.finished_at is not None
        trail = (await asyncio.to_thread(manager.get, "/console/operations/")).content.decode()
        row = trail[trail.index(f'data-operation="{operation.pk}"'):]
        assert "manager@acme.test" in row[:row.index("</tr>")] and "Accepted" in row[:row.index("</tr>")]
        local = operation.requested_at.astimezone(ZoneInfo(world.maple.timezone))  # the building's own time
        assert local.strftime("%Y-%m-%d %H:%M:%S") in row and f'{{&quot;transactionId&quot;: {tx}}}' in row
        assert "RemoteStopTransaction on" in trail  # the message that says what the charger answered
        # The board reads the trail, and cannot operate.
        board = await sync_to_async(_client)(world.maple_board)
        assert (await asyncio.to_thread(board.get, "/console/operations/")).status_code == 200
        assert "operate/" not in (await asyncio.to_thread(board.get, "/console/")).content.decode()
    finally:
        await ws.close()


@pytest.mark.parametrize("who, host", [
    ("maple_board", HOST), ("maple_resident", HOST), ("harbor_manager", HOST), ("oak_resident", HOST),
])
async def test_nobody_else_can_send_one(daphne, world, committed, who, host):
    cp_id, charger, ws = await _charger(daphne, world)
    try:
        client = await sync_to_async(_client)(getattr(world, who), host)
        path = f"/console/operate/{cp_id}/1/unlock/"
        assert (await asyncio.to_thread(client.get, f"/console/operate/{cp_id}/1/")).status_code == 404
        assert (await asyncio.to_thread(client.get, path)).status_code == 404
        assert (await while_answering(charger, client.post, path)).status_code == 404
        assert [a for a, _ in charger.received_calls if a == "UnlockConnector"] == []
        assert await sync_to_async(_operations)(world.maple.schema_name, cp_id) == []
        if who != "maple_board":
            assert (await asyncio.to_thread(client.get, "/console/operations/")).status_code == 404
    finally:
        await ws.close()


async def test_a_refusal_and_a_silent_charger_are_recorded_as_such(daphne, world, committed):
    cp_id, charger, ws = await _charger(daphne, world, answers={"UnlockConnector": {"status": "UnlockFailed"}})
    manager = await sync_to_async(_client)(world.acme_manager)
    try:
        await while_answering(charger, manager.post, f"/console/operate/{cp_id}/2/unlock/")
        await while_answering(charger, manager.post, f"/console/operate/{cp_id}/1/soft_reset/")
    finally:
        await ws.close()
    offline = await asyncio.to_thread(manager.post, f"/console/operate/{cp_id}/1/unavailable/")
    assert offline.status_code == 302
    unlock, reset, unavailable = await sync_to_async(_operations)(world.maple.schema_name, cp_id)
    assert (unlock.outcome, unlock.answer, unlock.connector_number) == ("refused", {"status": "UnlockFailed"}, 2)
    assert (reset.action, reset.payload, reset.outcome, reset.connector_number) == (
        "Reset", {"type": "Soft"}, "accepted", None)  # the whole charger
    assert (unavailable.outcome, unavailable.error) == ("not_connected", "the charger is not connected")
    trail = (await asyncio.to_thread(manager.get, "/console/operations/")).content.decode()
    assert "Refused by the charger" in trail and "Charger not connected" in trail


async def test_stopping_with_no_session_under_way_sends_nothing(daphne, world, committed):
    cp_id, charger, ws = await _charger(daphne, world)
    manager = await sync_to_async(_client)(world.acme_manager)
    try:
        page = await asyncio.to_thread(manager.get, f"/console/operate/{cp_id}/1/stop/")
        assert 'id="nothing-to-stop"' in page.content.decode() and 'id="confirm-button"' not in page.content.decode()
        answer = await while_answering(charger, manager.post, f"/console/operate/{cp_id}/1/stop/")
        assert answer.status_code == 302
        assert [a for a, _ in charger.received_calls if a == "RemoteStopTransaction"] == []
        assert await sync_to_async(_operations)(world.maple.schema_name, cp_id) == []
        # Unknown operations, connectors and chargers: 404.
        for path in (f"/console/operate/{cp_id}/1/explode/", f"/console/operate/{cp_id}/9/unlock/",
                     "/console/operate/NOPE/1/unlock/", "/console/operate/TEST-HARBOR-1/1/unlock/"):
            assert (await asyncio.to_thread(manager.get, path)).status_code == 404, path
    finally:
        await ws.close()


async def test_the_commands_api_is_on_the_trail_too(daphne, world, committed):
    cp_id, charger, ws = await _charger(daphne, world, answers={"GetLocalListVersion": {"listVersion": 3}})
    manager = await sync_to_async(_client)(world.acme_manager, "localhost")
    try:
        answer = await while_answering(charger, manager.post, f"/api/ocpp/chargers/{cp_id}/commands/GetLocalListVersion",
                                        "{}", "application/json")
        assert answer.status_code == 200 and answer.json() == {"status": "ok", "answer": {"listVersion": 3}}
    finally:
        await ws.close()
    [operation] = await sync_to_async(_operations)(world.maple.schema_name, cp_id)
    assert (operation.via, operation.action, operation.outcome, operation.answer) == (
        "api", "GetLocalListVersion", "accepted", {"listVersion": 3})
