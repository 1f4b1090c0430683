"""Live charger state in Redis: one hash per charger, cheap to read for dashboards and the load balancer.

Fields (all strings):
    schema, connected ("1"/"0"), channel, last_seen (unix seconds), heartbeat_interval,
    status:<n>, error_code:<n>, current_a:<n>:<L1|L2|L3>, current_at:<n>, power_w:<n>, register_wh:<n>,
    transaction_id:<n>, meter_start_wh:<n>, session_energy_wh:<n>

Written by the OCPP consumer as messages arrive (no database query). Read raw with
``read`` / ``read_sync`` / ``read_many_sync``, or typed with ``read_building_live``
(``ChargerLive`` and its ``ConnectorLive``: Decimal amperes per phase, integer Wh),
which is what dashboards and the load balancer read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import redis
import redis.asyncio as aioredis

from apps.core import live_store

# A connection writes its charger's ``last_seen`` at most this often (apps.ocpp.consumer.TOUCH_EVERY_S): a
# reader must allow this much on top of the charger's own intervals.
LAST_SEEN_RESOLUTION_S = 5.0

# Redis clients and key names are shared with the other layers (apps/core/live_store.py).

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
    return live_store.prefixed("ocpp", name)


def key(charge_point_id: str) -> str:
    return prefixed(f"live:{charge_point_id}")


def _client() -> aioredis.Redis:
    return live_store.client()


def client() -> aioredis.Redis:
    """This event loop's client of the shared, bounded pool."""
    return _client()


# Writes a new connection's fields and returns what the hash held before, in one round trip; unless another
# connection holds the charger whose handshake began after this one's (ARGV[1], seconds since the epoch): then
# nothing is written, and {0}.
_CONNECT = """
local held = redis.call('HMGET', KEYS[1], 'connected', 'channel', 'handshake_at')
if held[1] == '1' and held[2] and held[2] ~= ARGV[2] and held[3] and tonumber(held[3]) > tonumber(ARGV[1]) then
  return {0}
end
local before = redis.call('HGETALL', KEYS[1])
redis.call('HSET', KEYS[1], 'handshake_at', ARGV[1], unpack(ARGV, 3))
return {1, before}
"""


async def update(charge_point_id: str, fields: dict[str, str | int]) -> int:
    """Write the fields; how many of them the hash did not have (all of them when the hash was gone)."""
    if not fields:
        return 0
    return int(await _client().hset(key(charge_point_id), mapping={k: str(v) for k, v in fields.items()}))


# A connection's periodic write: only while the hash is still its own. "lost" when the hash was gone (Redis
# restarted; the fields are written), "replaced" when another connection's channel holds it (nothing written).
_TOUCH = """
local owner = redis.call('HGET', KEYS[1], 'channel')
if owner and owner ~= ARGV[1] then
  return 'replaced'
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
if owner then
  return 'written'
end
return 'lost'
"""


async def touch(charge_point_id: str, channel: str, fields: dict[str, str | int]) -> str:
    """Write ``fields`` while the hash belongs to ``channel``: "written", "lost" (it was gone; written) or
    "replaced" (a newer connection holds it; nothing written)."""
    flat = (x for k, v in fields.items() for x in (k, str(v)))
    return str(await _client().eval(_TOUCH, 1, key(charge_point_id), channel, *flat))


async def connect(charge_point_id: str, fields: dict[str, str | int], *, began: float) -> dict[str, str] | None:
    """A new connection's fields (``channel`` among them) written, with ``began``, when its handshake began
    (``time.time()``); the hash as it was before them (empty when there was none). None, and nothing written,
    when the charger is held by a connection whose handshake began later: this handshake is stale (it waited
    so long that the charger gave up on it and connected again), and taking the charger over would cut the
    connection the charger uses now."""
    flat = (x for k, v in fields.items() for x in (k, str(v)))
    result = await _client().eval(_CONNECT, 1, key(charge_point_id), repr(began), str(fields["channel"]), *flat)
    if not result[0]:
        return None
    before = result[1]
    return dict(zip(before[::2], before[1::2], strict=True))


async def remove_fields(charge_point_id: str, *names: str) -> None:
    if names:
        await _client().hdel(key(charge_point_id), *names)


async def release(charge_point_id: str, channel: str, last_seen: int) -> None:
    await _client().eval(_RELEASE, 1, key(charge_point_id), channel, str(last_seen))


async def read(charge_point_id: str) -> dict[str, str]:
    return await _client().hgetall(key(charge_point_id))


async def read_many(charge_point_ids: list[str]) -> dict[str, dict[str, str]]:
    """Several chargers' live state in one round trip."""
    pipe = _client().pipeline(transaction=False)
    for cp_id in charge_point_ids:
        pipe.hgetall(key(cp_id))
    return dict(zip(charge_point_ids, await pipe.execute(), strict=True))


def _sync() -> redis.Redis:
    return live_store.sync_client()


def read_sync(charge_point_id: str) -> dict[str, str]:
    return _sync().hgetall(key(charge_point_id))


def mark_once(name: str, ttl_s: int) -> bool:
    """Set a flag (under this deployment's prefix) unless it is set; True when this call set it."""
    return bool(_sync().set(prefixed(name), "1", nx=True, ex=ttl_s))


def unmark(name: str) -> None:
    _sync().delete(prefixed(name))


def connected_to(state: dict[str, str], schema_name: str) -> bool:
    """Whether a live state (``read`` / ``read_sync``) is an open connection of the building ``schema_name``."""
    return state.get("connected") == "1" and state.get("schema") == schema_name


def read_many_sync(charge_point_ids: list[str]) -> dict[str, dict[str, str]]:
    pipe = _sync().pipeline(transaction=False)
    for cp_id in charge_point_ids:
        pipe.hgetall(key(cp_id))
    return dict(zip(charge_point_ids, pipe.execute(), strict=True))


# --- typed reading (what dashboards and the load balancer read) ---------------------------

PHASES = ("L1", "L2", "L3")


@dataclass(frozen=True)
class ConnectorLive:
    """What one connector is doing right now, as its charger last reported it (no database query).

    Currents are Decimal amperes per phase (L1, L2, L3; None when the charger did not report that phase),
    power Decimal watts, energy integer Wh. ``session_energy_wh`` is the energy of the session under way
    (the register minus meterStart), None when none is known.
    """

    number: int
    status: str = ""  # the OCPP status last reported ("" when none)
    error_code: str = ""
    current_l1_a: Decimal | None = None
    current_l2_a: Decimal | None = None
    current_l3_a: Decimal | None = None
    power_w: Decimal | None = None
    register_wh: int | None = None
    transaction_id: int | None = None
    meter_start_wh: int | None = None
    session_energy_wh: int | None = None
    current_at: datetime | None = None  # when the platform received the currents (its own clock)

    @property
    def currents_a(self) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
        return self.current_l1_a, self.current_l2_a, self.current_l3_a


@dataclass(frozen=True)
class ChargerLive:
    """A charger's live state: its connection, connector 0's status, and each connector it reported on."""

    charge_point_id: str
    schema: str = ""  # the building whose connection wrote it
    connected: bool = False
    last_seen: datetime | None = None
    heartbeat_interval_s: int | None = None
    status: str = ""  # connector 0: the charger as a whole
    error_code: str = ""
    connectors: dict[int, ConnectorLive] = field(default_factory=dict)

    def connector(self, number: int) -> ConnectorLive:
        """The connector's state; an empty one when the charger has reported nothing about it."""
        return self.connectors.get(number) or ConnectorLive(number)

    @classmethod
    def from_state(cls, charge_point_id: str, state: dict[str, str]) -> ChargerLive:
        """Parse a hash as ``read`` returns it; values that do not parse count as not reported."""
        per_connector: dict[int, dict[str, object]] = {}
        for name, raw in state.items():
            parts = name.split(":")
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            number, kind = int(parts[1]), parts[0]
            fields = per_connector.setdefault(number, {})
            if kind in ("status", "error_code"):
                fields[kind] = raw
            elif kind == "current_a" and len(parts) == 3 and parts[2] in PHASES:
                fields[f"current_{parts[2].lower()}_a"] = _decimal(raw)
            elif kind == "power_w":
                fields[kind] = _decimal(raw)
            elif kind == "current_at":
                seconds = _decimal(raw)
                fields[kind] = datetime.fromtimestamp(float(seconds), tz=UTC) if seconds is not None else None
            elif kind in ("register_wh", "transaction_id", "meter_start_wh", "session_energy_wh"):
                fields[kind] = _int(raw)
        zero = per_connector.pop(0, {})
        last_seen = _int(state.get("last_seen"))
        return cls(
            charge_point_id=charge_point_id, schema=state.get("schema", ""), connected=state.get("connected") == "1",
            last_seen=datetime.fromtimestamp(last_seen, tz=UTC) if last_seen else None,
            heartbeat_interval_s=_int(state.get("heartbeat_interval")),
            status=str(zero.get("status", "")), error_code=str(zero.get("error_code", "")),
            connectors={n: ConnectorLive(n, **fields) for n, fields in sorted(per_connector.items())},
        )


def read_building_live(charge_point_ids: Iterable[str]) -> dict[str, ChargerLive]:
    """The live state of the chargers named, in one pipelined round trip to Redis; every id is a key."""
    ids = list(charge_point_ids)
    if not ids:
        return {}
    return {cp_id: ChargerLive.from_state(cp_id, state) for cp_id, state in read_many_sync(ids).items()}


def _decimal(raw: str | None) -> Decimal | None:
    try:
        value = Decimal(raw) if raw is not None else None
    except InvalidOperation:
        return None
    return value if value is not None and value.is_finite() else None


def _int(raw: str | None) -> int | None:
    value = _decimal(raw)
    return int(value) if value is not None else None
