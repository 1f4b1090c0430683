"""The allocator's state between cycles as JSON (kept in Redis per building). Pure: no Django.

A state that does not decode (an older format, a damaged value) is None: the allocator then starts
afresh, which is safe (it believes the meter at once and re-learns the rest within a cycle or two).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from apps.loadbalancing.allocator import AllocatorState, ConnectorMemory, NonEvEstimate

VERSION = 1


def _t(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _three(values: Any, convert: Any) -> tuple[Any, Any, Any]:
    if len(values) != 3:
        raise ValueError("a value per phase: three")
    return convert(values[0]), convert(values[1]), convert(values[2])


def encode(state: AllocatorState) -> str:
    return json.dumps({
        "v": VERSION,
        "estimates": {
            node: {"estimate_ma": list(e.estimate_ma), "pending_since": [_t(t) for t in e.pending_since],
                   "pending_peak_ma": list(e.pending_peak_ma), "read_at": _t(e.read_at),
                   "provisional_ma": list(e.provisional_ma), "provisional_at": [_t(t) for t in e.provisional_at]}
            for node, e in state.estimates.items()
        },
        "connectors": {
            key: {"session_id": m.session_id, "running": m.running, "since": _t(m.since), "limit_ma": m.limit_ma,
                  "raised_at": _t(m.raised_at), "reclaim_cap_ma": m.reclaim_cap_ma, "ever_ran": m.ever_ran,
                  "need": m.need, "need_served_ppm": m.need_served_ppm, "need_at": _t(m.need_at),
                  "need_demand_wh": m.need_demand_wh, "need_departure": _t(m.need_departure), "done": m.done,
                  "lowered_at": _t(m.lowered_at), "lowered_from_ma": m.lowered_from_ma,
                  "paused_on_lag": m.paused_on_lag}
            for key, m in state.connectors.items()
        },
    }, separators=(",", ":"))


def decode(text: str | bytes | None) -> AllocatorState | None:
    if not text:
        return None
    try:
        data = json.loads(text)
        if data.get("v") != VERSION:
            return None
        estimates = {
            node: NonEvEstimate(
                estimate_ma=(int(e["estimate_ma"][0]), int(e["estimate_ma"][1]), int(e["estimate_ma"][2])),
                pending_since=(_dt(e["pending_since"][0]), _dt(e["pending_since"][1]), _dt(e["pending_since"][2])),
                pending_peak_ma=(int(e["pending_peak_ma"][0]), int(e["pending_peak_ma"][1]),
                                 int(e["pending_peak_ma"][2])),
                read_at=_dt(e["read_at"]),
                # Absent from states written before provisional rises: nothing provisional.
                provisional_ma=_three(e.get("provisional_ma", (0, 0, 0)), int),
                provisional_at=_three(e.get("provisional_at", (None, None, None)), _dt),
            )
            for node, e in data["estimates"].items()
        }
        connectors = {}
        for key, m in data["connectors"].items():
            since = _dt(m["since"])
            if since is None:
                return None
            connectors[key] = ConnectorMemory(
                session_id=str(m["session_id"]), running=bool(m["running"]), since=since,
                limit_ma=int(m["limit_ma"]), raised_at=_dt(m["raised_at"]),
                reclaim_cap_ma=None if m["reclaim_cap_ma"] is None else int(m["reclaim_cap_ma"]),
                ever_ran=bool(m["ever_ran"]),
                # Absent from states written before demand-weighted sharing: no need known, not done.
                need=None if m.get("need") is None else int(m["need"]),
                need_served_ppm=int(m.get("need_served_ppm", 0)), need_at=_dt(m.get("need_at")),
                need_demand_wh=None if m.get("need_demand_wh") is None else int(m["need_demand_wh"]),
                need_departure=_dt(m.get("need_departure")),
                done=bool(m.get("done", False)),
                lowered_at=_dt(m.get("lowered_at")),
                lowered_from_ma=None if m.get("lowered_from_ma") is None else int(m["lowered_from_ma"]),
                paused_on_lag=bool(m.get("paused_on_lag", False)),
            )
        return AllocatorState(estimates=estimates, connectors=connectors)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
