"""What only a real daphne (run with the Procfile's flags) shows: odd ids and paths get a clean 403, never a
500, and a message above the size limit closes the connection."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
import websockets.exceptions

from tests.ocpp.charger import FakeCharger, ws_headers
from tests.servers import Daphne, database_url_for_subprocesses


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    server = Daphne(database_url_for_subprocesses(), tmp_path_factory.mktemp("daphne") / "daphne.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("path", [
    "/ocpp/" + "A" * 70,
    "/ocpp/CP%00ONE",
    "/ocpp/..%2F",
    "/ocpp/..%2F..%2Fetc",
    "/ocpp/a/b",
    "/somewhere-else",
    "/ocpp/%E2%80%AE%0A",
])
async def test_odd_ids_and_paths_get_a_clean_403(daphne, world, committed, path):
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"ws://127.0.0.1:{daphne.port}{path}", subprotocols=["ocpp1.6"],
                                      additional_headers=ws_headers("X", "whatever-password")):
            pass
    assert refused.value.response.status_code == 403
    assert "Traceback" not in daphne.read_log()


async def test_a_message_above_the_limit_closes_the_connection(daphne, charger_id):
    from hoa_charging.procfile import daphne_websocket_flags

    flags = daphne_websocket_flags()
    limit = int(flags[flags.index("--websocket-max-message-size") + 1])
    assert limit == 65536
    async with websockets.connect(f"ws://127.0.0.1:{daphne.port}/ocpp/{charger_id}", subprotocols=["ocpp1.6"],
                                  additional_headers=ws_headers(charger_id), max_size=None) as ws:
        charger = FakeCharger(ws)
        # Just under the limit: a (useless) DataTransfer is answered.
        data = "x" * (limit - 200)
        reply = await charger.call("DataTransfer", {"vendorId": "acme", "data": data})
        assert reply[0] == 3
        await ws.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "acme", "data": "x" * limit}]))
        await asyncio.wait_for(ws.wait_closed(), 10)
        assert ws.close_code in (1006, 1009)  # daphne drops the connection; the charger may reconnect
    async with websockets.connect(f"ws://127.0.0.1:{daphne.port}/ocpp/{charger_id}", subprotocols=["ocpp1.6"],
                                  additional_headers=ws_headers(charger_id)) as ws:
        assert (await FakeCharger(ws).call("Heartbeat", {}))[0] == 3
