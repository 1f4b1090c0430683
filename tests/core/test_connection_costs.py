"""What a new connection costs the process, where a library does more than it needs to.

- autobahn formats its options for a debug line at every websocket connection; with the platform's change
  (hoa_charging/websocket_server.py) the line is formatted only when it is logged, and reads the same.
- redis-py reads its package metadata from disk for every new connection; the platform's pools pass no
  driver information, so it does not.
- redis-py parses replies in pure Python unless hiredis is installed; it is a dependency, and every pool of
  the platform (the channel layer's, the live state's) parses with it.
"""

from __future__ import annotations

import pprint
import string
import subprocess
import sys
from importlib import metadata

import pytest
from autobahn.websocket import protocol
from channels.layers import get_channel_layer

from apps.core import live_store
from hoa_charging import websocket_server


def test_the_options_line_formats_as_pprint_did_and_only_when_formatted():
    options = [("autoPingInterval", 0, "WebSocketServerFactory"), ("maxMessagePayloadSize", 65536, "x" * 90)]
    lazy = websocket_server.LazyPformat(options)
    assert str(lazy) == pprint.pformat(options)
    assert string.Formatter().format("\n{attrs}", attrs=lazy) == "\n" + pprint.pformat(options)  # as twisted
    assert f"{lazy:>10}" == format(pprint.pformat(options), ">10")


def test_it_applies_where_autobahn_is_loaded_and_imports_nothing_elsewhere():
    # Daphne loads autobahn before the application (hoa_charging/asgi.py calls apply()).
    websocket_server.apply()
    assert protocol.pformat is websocket_server.LazyPformat
    websocket_server.apply()  # idempotent
    assert protocol.pformat is websocket_server.LazyPformat
    # A process without autobahn (a worker, a command) does not load it: it would set up txaio for the process.
    probe = "import sys; from hoa_charging import websocket_server; websocket_server.apply(); print('autobahn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.fixture
def metadata_reads(monkeypatch):
    reads = []
    original = metadata.version

    def version(name):
        reads.append(name)
        return original(name)

    monkeypatch.setattr(metadata, "version", version)
    return reads


async def test_new_redis_connections_of_the_platforms_pools_read_no_package_metadata(metadata_reads):
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "probe"})
    assert (await layer.receive(channel))["type"] == "probe"
    assert await live_store.client().ping()
    pool = live_store.client().connection_pool
    connection = pool.make_connection()  # a new connection, as in a burst
    await connection.connect()
    await connection.disconnect()
    assert live_store.sync_client().ping()
    assert metadata_reads == []
    await layer.flush()


async def test_every_redis_pool_of_the_platform_parses_replies_with_hiredis():
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "probe"})
    assert (await layer.receive(channel))["type"] == "probe"
    pools = [live_store.client().connection_pool, live_store.sync_client().connection_pool]
    pools += [layer.connection(index).connection_pool for index in range(len(layer.hosts))]
    for pool in pools:
        connection = pool.make_connection()
        assert type(connection._parser).__name__ in {"_HiredisParser", "_AsyncHiredisParser"}, pool
    await layer.flush()
