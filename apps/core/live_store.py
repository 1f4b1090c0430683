"""Redis for live state, shared by every layer: one bounded pool per event loop, one sync client, and key names.

The OCPP side keeps chargers' live state here (apps/ocpp/live.py), the electrical side the site meters'
latest readings (apps/electrical/latest.py), and both count failed credentials here
(apps/core/failures.py). Keys live under this deployment's channel-layer prefix, so that test runs on
one Redis keep apart:

    prefixed("ocpp", "live:CP-1")  ->  "hoa:ocpp:live:CP-1"
"""

from __future__ import annotations

import asyncio
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

# Per event loop. A connection is held from a command's sending until its answer is read, and on a saturated
# event loop (a reconnect storm) reading waits its turn: 50 were all held while a thousand handshakes waited,
# and some gave up after the pool's timeout. Redis itself takes 10,000 clients.
MAX_CONNECTIONS = 300
POOL_TIMEOUT_S = 20

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None


def prefix() -> str:
    return settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "hoa")


def prefixed(area: str, name: str) -> str:
    """A Redis key of ``area`` (ocpp, meter...) under this deployment's prefix (tests run under their own)."""
    return f"{prefix()}:{area}:{name}"


def client() -> aioredis.Redis:
    """This event loop's client of a shared, bounded pool."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    if found is None:
        # A bounded pool that waits for a free connection: with thousands of chargers, bursts of updates
        # (a reconnect storm) would otherwise open connections until redis-py refuses ("Too many
        # connections", its default cap of 100) and the update fails.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, decode_responses=True, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S,
            driver_info=None)  # as the channel layer's (settings.CHANNEL_LAYERS)
        found = aioredis.Redis(connection_pool=pool)
        _clients[loop] = found
    return found


def sync_client() -> redis.Redis:
    """The process's synchronous client (thread-safe: redis-py pools its connections)."""
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, driver_info=None)
    return _sync_client
