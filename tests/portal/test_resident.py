"""The resident's pages and live view against a real daphne and a charger connected to it: a resident starts a
session from the phone on a connector they may use, watches it (power, energy, cost so far, the limit and why)
without reloading, stops it, reports a card lost (refused by the platform at once), downloads their statement.
Nobody else reaches any of it: not another household, not a resident of another building, not a manager."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import websockets
import websockets.exceptions
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from apps.buildings.models import IdTag, ParkingSpot, Resident, Unit
from apps.charging.models import Connector
from apps.core.tenants import in_schema
from apps.ocpp.models import RemoteOperation
from apps.statements import services as statements
from apps.statements.models import StatementLine
from apps.visitors.services import visitor_codes_ensure
from tests import factories
from tests.ocpp.charger import FakeCharger, connected_charger, while_answering
from tests.servers import daphne_running

HOST = "maple-court.localhost"
QUERIES = 22  # the resident's page, however many statements, sessions and cards


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    with daphne_running(tmp_path_factory, env={"CONSOLE_PUSH_MS": "200", "CONSOLE_RECHECK_S": "1"}) as server:
        yield server


def _household(world, *, spot_charger: str | None = None):
    """A resident of a new unit with one card and, when named, the charger's connector 1 on the unit's own spot."""
    n = uuid.uuid4().hex[:6].upper()
    user = factories.resident(world.maple, f"r{n.lower()}@maple.test", f"U{n}", id_tags=(f"C{n}",))
    if spot_charger is not None:
        with in_schema(world.maple.schema_name):
            spot = ParkingSpot.objects.create(label=f"S{n}", unit=Unit.objects.get(number=f"U{n}"))
            Connector.objects.filter(charge_point__charge_point_id=spot_charger, connector_id=1).update(
                parking_spot=spot)
    return user, f"C{n}"


def _client(user, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


def _cookie(client: Client) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _live(daphne, cookie: str | None, host: str = HOST):
    headers = {"Origin": f"http://{host}:{daphne.port}"} | ({"Cookie": cookie} if cookie else {})
    return websockets.connect(f"ws://{host}:{daphne.port}/ws/me/", host="127.0.0.1", port=daphne.port,
                              additional_headers=headers, open_timeout=10)


async def _update(ws, wanted, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01)))
        if wanted(message):
            return message


async def _charger(daphne, world, answers=None) -> tuple[str, FakeCharger, object]:
    return await connected_charger(daphne, world.maple, "ME", answers)


def _ago(**delta) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def _operations(schema: str, cp_id: str) -> list[RemoteOperation]:
    with in_schema(schema):
        return list(RemoteOperation.objects.filter(charge_point_id=cp_id).order_by("id"))


async def test_a_resident_starts_watches_and_stops_a_session_from_the_phone(daphne, world, committed):
    cp_id, charger, ws = await _charger(daphne, world)
    try:
        user, _card = await sync_to_async(_household)(world, spot_charger=cp_id)
        await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"})
        await charger.settle(0.5)
        phone = await sync_to_async(_client)(user)
        home = (await asyncio.to_thread(phone.get, "/me/")).content.decode()
        assert f'id="start-{cp_id}-1"' in home and 'id="no-session"' in home
        assert "$0.32 per kWh" in home  # the tariff in force, in words
        start = f"/me/charge/{cp_id}/1/"
        # Scanning the connector's label (the visitors' page) leads a resident to start on their own account.
        label = (await asyncio.to_thread(phone.get, f"/v/{await sync_to_async(_code_of)(world, cp_id)}")).content
        assert f'href="{start}"' in label.decode()
        assert (await asyncio.to_thread(phone.get, start)).status_code == 200
        assert not [a for a, _ in charger.received_calls if a == "RemoteStartTransaction"]  # asking is not sending
        answer = await while_answering(charger, phone.post, start)
        assert answer.status_code == 302 and answer["Location"] == "/me/"
        [(_, payload)] = [(a, p) for a, p in charger.received_calls if a == "RemoteStartTransaction"]
        assert payload["connectorId"] == 1 and payload["idTag"].startswith("APP")
        [operation] = await sync_to_async(_operations)(world.maple.schema_name, cp_id)
        assert (operation.via, operation.outcome, operation.user_email) == ("resident", "accepted", user.email)
        # The charger starts the session with the app card, as a real one does after RemoteStart.
        started = await charger.call("StartTransaction", {"connectorId": 1, "idTag": payload["idTag"],
                                                          "meterStart": 1000, "timestamp": _ago(minutes=30)})
        assert started[2]["idTagInfo"]["status"] == "Accepted"
        tx = started[2]["transactionId"]
        await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        home = (await asyncio.to_thread(phone.get, "/me/")).content.decode()
        assert 'data-session="' in home and 'id="no-session"' not in home
        async with _live(daphne, _cookie(phone)) as socket:
            await charger.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{
                "timestamp": _ago(minutes=0), "sampledValue": [
                    {"measurand": "Energy.Active.Import.Register", "value": "3500", "unit": "Wh"},
                    {"measurand": "Power.Active.Import", "value": "7100", "unit": "W"}]}]})
            message = await _update(socket, lambda m: any(
                s["energy_kwh"] == "2.50" for s in m.get("sessions", {}).values()))
            [live] = message["sessions"].values()
            assert live["power_kw"] == "7.1" and live["status"] == "Charging" and live["online"] is True
            # 2.5 kWh at the night price, the day price, or across the change: 0.45 to 0.80
            assert Decimal("0.45") <= Decimal(live["cost"]) <= Decimal("0.80") and live["cost_text"].startswith("$")
        [session_pk] = [int(k) for k in message["sessions"]]
        stop = f"/me/sessions/{session_pk}/stop/"
        assert (await asyncio.to_thread(phone.get, stop)).status_code == 200
        answer = await while_answering(charger, phone.post, stop)
        assert answer.status_code == 302
        assert ("RemoteStopTransaction", {"transactionId": tx}) in charger.received_calls
    finally:
        await ws.close()


async def test_a_resident_cannot_start_on_another_households_spot_or_stop_their_session(daphne, world, committed):
    cp_id, charger, ws = await _charger(daphne, world)
    try:
        owner, _ = await sync_to_async(_household)(world, spot_charger=cp_id)
        other, _ = await sync_to_async(_household)(world)
        await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"})
        neighbour = await sync_to_async(_client)(other)
        home = (await asyncio.to_thread(neighbour.get, "/me/")).content.decode()
        assert f'id="start-{cp_id}-1"' not in home  # the owner's spot
        assert f'data-place="{cp_id}#2"' in home  # connector 2 has no spot: shared by the building
        assert (await asyncio.to_thread(neighbour.get, f"/me/charge/{cp_id}/1/")).status_code == 404
        assert (await while_answering(charger, neighbour.post, f"/me/charge/{cp_id}/1/")).status_code == 404
        assert not [a for a, _ in charger.received_calls if a == "RemoteStartTransaction"]
        started = await charger.call("StartTransaction", {"connectorId": 1, "idTag": await sync_to_async(
            _card_of)(world, owner), "meterStart": 0, "timestamp": "2026-03-02T18:00:00Z"})
        session_pk = await sync_to_async(_session_pk)(world, started[2]["transactionId"])
        assert (await asyncio.to_thread(neighbour.get, f"/me/sessions/{session_pk}/stop/")).status_code == 404
        assert (await while_answering(charger, neighbour.post, f"/me/sessions/{session_pk}/stop/")).status_code == 404
        assert not [a for a, _ in charger.received_calls if a == "RemoteStopTransaction"]
        # People of other buildings, and the building's manager (who stops sessions from the console): nothing.
        for outsider in (world.oak_resident, world.harbor_resident, world.acme_manager):
            client = await sync_to_async(_client)(outsider)
            for path in (f"/me/charge/{cp_id}/2/", f"/me/sessions/{session_pk}/stop/"):
                assert (await asyncio.to_thread(client.get, path)).status_code == 404
                assert (await while_answering(charger, client.post, path)).status_code == 404
        assert not [a for a, _ in charger.received_calls if a in ("RemoteStartTransaction", "RemoteStopTransaction")]
    finally:
        await ws.close()


def _code_of(world, cp_id: str) -> str:
    with in_schema(world.maple.schema_name):
        return visitor_codes_ensure([cp_id])[0].code


def _card_of(world, user) -> str:
    with in_schema(world.maple.schema_name):
        return IdTag.objects.filter(resident__user=user).values_list("id_tag", flat=True).first()


def _session_pk(world, transaction_id: int) -> int:
    from apps.charging.models import ChargingSession

    with in_schema(world.maple.schema_name):
        return ChargingSession.objects.get(transaction_id=transaction_id).pk


async def test_a_card_reported_lost_is_refused_at_once(daphne, world, committed):
    _, charger, ws = await _charger(daphne, world)
    try:
        user, card = await sync_to_async(_household)(world)
        phone = await sync_to_async(_client)(user)
        assert (await charger.call("Authorize", {"idTag": card}))[2]["idTagInfo"]["status"] == "Accepted"
        lost = f"/me/cards/{card}/lost/"
        assert card in (await asyncio.to_thread(phone.get, lost)).content.decode()
        answer = await asyncio.to_thread(phone.post, lost)
        assert answer.status_code == 302
        assert (await charger.call("Authorize", {"idTag": card}))[2]["idTagInfo"]["status"] == "Blocked"
        with_status = await sync_to_async(_card_status)(world, card)
        assert with_status[0] == "lost" and user.email in with_status[1]
        home = (await asyncio.to_thread(phone.get, "/me/")).content.decode()
        assert f'id="lost-{card}"' not in home  # nothing more to report
        # Reporting it again changes nothing, and says so.
        assert (await asyncio.to_thread(phone.post, lost)).status_code == 302
        other, other_card = await sync_to_async(_household)(world)
        stranger = await sync_to_async(_client)(other)
        assert (await asyncio.to_thread(stranger.post, f"/me/cards/{card}/lost/")).status_code == 404
        assert (await asyncio.to_thread(phone.post, f"/me/cards/{other_card}/lost/")).status_code == 404
        assert (await sync_to_async(_card_status)(world, other_card))[0] == "active"
    finally:
        await ws.close()


def _card_status(world, card: str) -> tuple[str, str]:
    with in_schema(world.maple.schema_name):
        tag = IdTag.objects.get(id_tag=card)
        return tag.status, tag.status_reason


def _statement(world, user) -> int:
    with in_schema(world.maple.schema_name):
        resident = Resident.objects.get(user=user)
        draft = statements.statement_draft_create(resident=resident, currency="USD", lines=[statements.LineInput(
            kind=StatementLine.Kind.SESSION, description="Session 1", amount=Decimal("4.20"))])
        return statements.statement_finalize(statement_id=draft.pk).pk


def test_a_resident_downloads_their_statement_and_nobody_else_does(world, committed, django_assert_max_num_queries):
    user, _ = _household(world)
    statement_pk = _statement(world, user)
    phone = _client(user)
    with django_assert_max_num_queries(QUERIES):
        home = phone.get("/me/").content.decode()
    assert f'id="pdf-{statement_pk}"' in home and "$4.20" in home and "you owe $4.20" in home
    for _ in range(3):  # more statements, the same queries
        _statement(world, user)
    with django_assert_max_num_queries(QUERIES):
        assert phone.get("/me/").content.decode().count('id="pdf-') == 4
    pdf = phone.get(f"/me/statements/{statement_pk}.pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    other, _ = _household(world)
    assert _client(other).get(f"/me/statements/{statement_pk}.pdf").status_code == 404
    # A resident of another building, on their own building's host: their own page, without it.
    oak = _client(world.oak_resident, "oak-tower.localhost")
    assert oak.get(f"/me/statements/{statement_pk}.pdf").status_code == 404
    assert f'id="pdf-{statement_pk}"' not in oak.get("/me/").content.decode()
    for outsider in (world.oak_resident, world.harbor_resident, world.acme_manager, world.maple_board):
        client = _client(outsider, HOST)
        assert client.get(f"/me/statements/{statement_pk}.pdf").status_code == 404
        assert client.get("/me/").status_code == 404
    assert Client(HTTP_HOST=HOST).get("/me/").status_code == 302  # to the login


@pytest.mark.parametrize("who", ["acme_manager", "maple_board", "oak_resident", "harbor_resident", None])
async def test_nobody_but_a_resident_of_the_building_gets_the_live_view(daphne, world, committed, who):
    cookie = None
    if who is not None:
        cookie = _cookie(await sync_to_async(_client)(getattr(world, who)))
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with _live(daphne, cookie):
            pass
    assert refused.value.response.status_code == 403


async def test_a_resident_logged_out_is_disconnected(daphne, world, committed):
    client = await sync_to_async(_client)(world.maple_resident)
    async with _live(daphne, _cookie(client)) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert first["type"] == "update"
        await asyncio.to_thread(client.logout)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await asyncio.wait_for(_update(socket, lambda m: False, timeout=10), 12)
        assert closed.value.rcvd.code == 4403
