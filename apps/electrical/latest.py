"""The latest site-meter reading of each building, in Redis: what the load balancer reads in its hot path.

One hash per building (``<prefix>:meter:latest:<schema>``), fields (strings):
    meter, sampled_us (unix microseconds), received_us, currents ("41.2,38.0,44.9"), powers ("" or W),
    stale_after_s, stale ("1" while the stale alert is open)

Written after a reading is committed, only when it is newer than the one held (a late batch of old
readings does not move it back). Read with ``site_load_latest(schema_name)``: no database query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.utils import timezone

from apps.core import live_store
from apps.electrical.readings import Reading

# Replace the held reading when it is of another meter or older; say whether it replaced it and whether
# the building was marked stale.
_PUT = """
local held_meter = redis.call('HGET', KEYS[1], 'meter')
local held = tonumber(redis.call('HGET', KEYS[1], 'sampled_us') or '-1')
local stale = redis.call('HGET', KEYS[1], 'stale') or ''
if held_meter ~= ARGV[1] or held < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'meter', ARGV[1], 'sampled_us', ARGV[2], 'received_us', ARGV[3],
             'currents', ARGV[4], 'powers', ARGV[5], 'stale_after_s', ARGV[6])
  return {1, stale}
end
return {0, stale}
"""


@dataclass(frozen=True)
class SiteLoad:
    """The building's latest measured load: the meter, the reading, and when it reached us."""

    meter_key: str
    reading: Reading
    received_at: datetime
    stale_after_s: int

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds since the reading was taken (by the meter's clock, which is checked on arrival)."""
        return ((now or timezone.now()) - self.reading.sampled_at).total_seconds()

    def is_stale(self, now: datetime | None = None) -> bool:
        return self.age_s(now) > self.stale_after_s


def key(schema_name: str) -> str:
    return live_store.prefixed("meter", f"latest:{schema_name}")


def _us(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(value: str) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(value))


def put(schema_name: str, meter_key: str, reading: Reading, *, received_at: datetime,
        stale_after_s: int) -> tuple[bool, bool]:
    """Hold ``reading`` as the building's latest unless a newer one is held: (replaced, marked stale)."""
    powers = ",".join(str(p) for p in reading.powers_w) if reading.powers_w else ""
    replaced, stale = live_store.sync_client().eval(
        _PUT, 1, key(schema_name), meter_key, str(_us(reading.sampled_at)), str(_us(received_at)),
        ",".join(str(c) for c in reading.currents_a), powers, str(stale_after_s))
    return bool(replaced), stale == "1"


def mark_stale(schema_name: str, stale: bool) -> None:
    if stale:
        live_store.sync_client().hset(key(schema_name), "stale", "1")
    else:
        live_store.sync_client().hdel(key(schema_name), "stale")


def forget(schema_name: str) -> None:
    live_store.sync_client().delete(key(schema_name))


def parse(state: dict[str, str]) -> SiteLoad | None:
    """A hash as Redis returns it; None when it holds no usable reading."""
    try:
        currents = tuple(Decimal(c) for c in state["currents"].split(","))
        powers = tuple(int(p) for p in state["powers"].split(",")) if state.get("powers") else None
        reading = Reading(_from_us(state["sampled_us"]), currents, powers)
        return SiteLoad(state["meter"], reading, _from_us(state["received_us"]), int(state["stale_after_s"]))
    except (KeyError, ValueError, InvalidOperation):
        return None


def site_load_latest(schema_name: str) -> SiteLoad | None:
    """The building's latest site-meter reading and its age, from Redis (no database query)."""
    return parse(live_store.sync_client().hgetall(key(schema_name)))


async def asite_load_latest(schema_name: str) -> SiteLoad | None:
    """``site_load_latest`` for async code (the OCPP consumers' event loop)."""
    return parse(await live_store.client().hgetall(key(schema_name)))


def site_meter_is_stale(schema_name: str, now: datetime | None = None) -> bool:
    """Whether the building's load is unknown: no reading held, or the latest older than its meter's limit."""
    latest = site_load_latest(schema_name)
    return latest is None or latest.is_stale(now)


async def asite_meter_is_stale(schema_name: str, now: datetime | None = None) -> bool:
    """``site_meter_is_stale`` for async code."""
    held = await asite_load_latest(schema_name)
    return held is None or held.is_stale(now)
