"""Two real daphne processes sharing the Redis channel layer: a command issued by a request
served by process 2 reaches a charger connected to process 1, and the answer comes back."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from apps.accounts.models import User
from tests.ocpp.charger import FakeCharger, ws_headers
from tests.servers import Daphne, database_url_for_subprocesses

CSRF = "a" * 32


@pytest.fixture(scope="module")
def daphnes(tmp_path_factory, _test_database_only):
    logs = tmp_path_factory.mktemp("daphne")
    servers = [Daphne(database_url_for_subprocesses(), logs / f"daphne{n}.log") for n in (1, 2)]
    try:
        for server in servers:
            server.start()
        yield [server.port for server in servers]
    finally:
        for server in servers:
            server.close()


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_NO_REDIRECTS = urllib.request.build_opener(_KeepRedirects)


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def _post(port: int, path: str, body: dict, session: str | None) -> tuple[int, dict]:
    cookie = f"csrftoken={CSRF}" + (f"; {settings.SESSION_COOKIE_NAME}={session}" if session else "")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Host": "localhost", "Cookie": cookie, "X-CSRFToken": CSRF, "Content-Type": "application/json"},
    )
    try:
        with _NO_REDIRECTS.open(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()
        return error.code, json.loads(body) if body.startswith(b"{") else {"raw": body.decode()[:200]}


def _staff_and_superuser() -> tuple[User, User]:
    suffix = uuid.uuid4().hex[:8]
    return (User.objects.create_user(f"staff-{suffix}@platform.test", "x", is_staff=True),
            User.objects.create_superuser(f"root-{suffix}@platform.test", "x"))


async def test_command_from_process_two_reaches_charger_on_process_one(daphnes, charger_id, world):
    first, second = daphnes
    url = f"ws://127.0.0.1:{first}/ocpp/{charger_id}"
    async with websockets.connect(url, subprotocols=["ocpp1.6"], additional_headers=ws_headers(charger_id)) as ws:
        assert ws.subprotocol == "ocpp1.6"
        charger = FakeCharger(ws, answers={"GetLocalListVersion": {"listVersion": 7}})
        assert (await charger.call("Heartbeat", {}))[0] == 3
        pump = asyncio.ensure_future(charger.settle(25))
        session = await sync_to_async(_session_cookie)(world.acme_manager)
        path = f"/api/ocpp/chargers/{charger_id}/commands/GetLocalListVersion"
        status, answer = await asyncio.to_thread(_post, second, path, {}, session)
        assert status == 200, answer
        assert answer == {"status": "ok", "answer": {"listVersion": 7}}
        assert ("GetLocalListVersion", {}) in charger.received_calls

        # A manager of another company cannot command this charger, nor can platform staff who manage
        # nothing; nobody anonymous can. A superuser can.
        staff, superuser = await sync_to_async(_staff_and_superuser)()
        for outsider in (world.harbor_manager, staff):
            status, answer = await asyncio.to_thread(_post, second, path, {}, await sync_to_async(_session_cookie)(
                outsider))
            assert status == 404 and "listVersion" not in str(answer)
        status, answer = await asyncio.to_thread(_post, second, path, {}, await sync_to_async(_session_cookie)(
            superuser))
        assert status == 200 and answer == {"status": "ok", "answer": {"listVersion": 7}}
        assert [action for action, _ in charger.received_calls] == ["GetLocalListVersion"] * 2
        status, _ = await asyncio.to_thread(_post, second, path, {}, None)
        assert status == 302  # anonymous: to the login page
        # An invalid payload never reaches the charger.
        calls = len(charger.received_calls)
        status, answer = await asyncio.to_thread(
            _post, second, f"/api/ocpp/chargers/{charger_id}/commands/Reset", {"type": "Sideways"}, session)
        assert status == 400 and answer["error"] in ("FormationViolation", "PropertyConstraintViolation")
        assert len(charger.received_calls) == calls
        pump.cancel()


async def test_real_handshake_refusal_is_http_403(daphnes, charger_id):
    url = f"ws://127.0.0.1:{daphnes[0]}/ocpp/{charger_id}"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(url, subprotocols=["ocpp1.6"],
                                      additional_headers=ws_headers(charger_id, "wrong")):
            pass
    assert refused.value.response.status_code == 403


async def test_connection_on_process_two_replaces_the_one_on_process_one(daphnes, charger_id):
    headers = ws_headers(charger_id)
    old = await websockets.connect(f"ws://127.0.0.1:{daphnes[0]}/ocpp/{charger_id}", subprotocols=["ocpp1.6"],
                                   additional_headers=headers)
    new = await websockets.connect(f"ws://127.0.0.1:{daphnes[1]}/ocpp/{charger_id}", subprotocols=["ocpp1.6"],
                                   additional_headers=headers)
    await asyncio.wait_for(old.wait_closed(), 10)
    assert (await FakeCharger(new).call("Heartbeat", {}))[0] == 3
    await new.close()
