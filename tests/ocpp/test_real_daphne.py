"""What only a real daphne (run with the Procfile's flags) shows: odd ids and paths get a clean 403, never a
500, a message above the size limit closes the connection, and a busy process keeps a storm's connections
waiting."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest
import websockets
import websockets.exceptions

from tests.ocpp.charger import FakeCharger, ws_headers
from tests.servers import Daphne, daphne_running, database_url_for_subprocesses


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    with daphne_running(tmp_path_factory) as server:
        yield server


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


async def _connect(port: int, count: int, timeout_s: float) -> int:
    """Open ``count`` TCP connections at once; how many the kernel completed within ``timeout_s``."""

    async def one() -> asyncio.StreamWriter | None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
        except (TimeoutError, OSError):
            return None
        return writer

    writers = await asyncio.gather(*(one() for _ in range(count)))
    for writer in writers:
        if writer is not None:
            writer.close()
    return sum(writer is not None for writer in writers)


async def test_a_busy_daphne_keeps_a_storms_connections_waiting_instead_of_dropping_them(tmp_path, _test_database_only):
    """After a restart every charger connects at once, while the process is busy with the first ones. The
    connections it has not accepted yet wait in the kernel's listen queue; Twisted's default queue holds 50,
    and a 2,000-charger storm overflowed it 8,297 times (`nstat TcpExtListenOverflows`): each dropped
    connection attempt is retried by the charger's TCP only after 1, 3, 7, 15... s, which made the storm's
    tail. The Procfile gives daphne a queue of 4,096 (`HOA_LISTEN_BACKLOG`); here a daphne that accepts
    nothing (stopped) must still have 500 connections completed by the kernel within 2 s, where the default
    queue completes about 51 and drops the rest."""
    server = Daphne(database_url_for_subprocesses(), tmp_path / "daphne.log")
    server.start()
    try:
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            completed = await _connect(server.port, 500, timeout_s=2.0)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
    finally:
        server.close()
    assert completed == 500
