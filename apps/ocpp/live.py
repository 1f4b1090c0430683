"""Live charger state in Redis: one hash per charger, cheap to read for dashboards and the load balancer.

Fields (all strings):
    schema, connected ("1"/"0"), channel, last_seen (unix seconds), heartbeat_interval,
    status:<n>, error_code:<n>, current_a:<n>:<L1|L2|L3>, power_w:<n>, register_wh:<n>,
    transaction_id:<n>, meter_start_wh:<n>, session_energy_wh:<n>

Written by the OCPP consumer as messages arrive (no database query), read with
``read`` / ``read_sync``.
"""

from __future__ import annotations

import asyncio
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

MAX_CONNECTIONS = 50
POOL_TIMEOUT_S = 20

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()
_sync_client: redis.Redis | None = None

# Clears "connected" only when the hash still belongs to the connection that is leaving.
_RELEASE = """
if redis.call('HGET', KEYS[1], 'channel') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'connected', '0', 'last_seen', ARGV[2])
  return 1
end
return 0
"""


def prefixed(name: str) -> str:
    """A Redis key of the OCPP side, under this deployment's prefix (tests run under their own)."""
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "hoa")
    return f"{prefix}:ocpp:{name}"


def key(charge_point_id: str) -> str:
    return prefixed(f"live:{charge_point_id}")


def _client() -> aioredis.Redis:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        # A bounded pool that waits for a free connection: with thousands of chargers, bursts of updates
        # (a reconnect storm) would otherwise open connections until redis-py refuses ("Too many
        # connections", its default cap of 100) and the update fails.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, decode_responses=True, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT_S)
        client = aioredis.Redis(connection_pool=pool)
        _clients[loop] = client
    return client


def client() -> aioredis.Redis:
    """This event loop's client of the shared, bounded pool."""
    return _client()


async def update(charge_point_id: str, fields: dict[str, str | int]) -> None:
    if fields:
        await _client().hset(key(charge_point_id), mapping={k: str(v) for k, v in fields.items()})


async def remove_fields(charge_point_id: str, *names: str) -> None:
    if names:
        await _client().hdel(key(charge_point_id), *names)


async def release(charge_point_id: str, channel: str, last_seen: int) -> None:
    await _client().eval(_RELEASE, 1, key(charge_point_id), channel, str(last_seen))


async def read(charge_point_id: str) -> dict[str, str]:
    return await _client().hgetall(key(charge_point_id))


def _sync() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    return _sync_client


def read_sync(charge_point_id: str) -> dict[str, str]:
    return _sync().hgetall(key(charge_point_id))


def connected_to(state: dict[str, str], schema_name: str) -> bool:
    """Whether a live state (``read`` / ``read_sync``) is an open connection of the building ``schema_name``."""
    return state.get("connected") == "1" and state.get("schema") == schema_name


def read_many_sync(charge_point_ids: list[str]) -> dict[str, dict[str, str]]:
    pipe = _sync().pipeline(transaction=False)
    for cp_id in charge_point_ids:
        pipe.hgetall(key(cp_id))
    return dict(zip(charge_point_ids, pipe.execute(), strict=True))
