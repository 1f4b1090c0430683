"""When a live limit's lease is renewed: each building on a schedule of its own (pure: no Django, no clock).

A TxProfile carries a lease: ``lease_s`` after it was sent, the charger falls to a safe floor unless the
platform sent it again. The periodic refresh asks for unchanged limits again and the dispatch re-sends the
ones due. If "due" were "half the lease gone", every building whose limits were acknowledged in the same
minute (all of them, after a platform restart or a reconnect storm) would be renewed in the same refresh,
and again every half lease: 5,000 profiles in one cycle, none in the next two.

So each building renews at fixed *renewal times* of its own: every half lease, at an offset derived from
its schema name, spread evenly over the half lease. Both sides read the same schedule:

- the refresh asks again once the building's next renewal time has passed since it last asked
  (``next_renewal``: when its mark of what it asked expires);
- the dispatch re-sends a limit whose lease began before the building's latest renewal time
  (``renewal_due``), and only then: a limit sent by an event just after a renewal time is not sent again
  until the next one.

The worst case is today's: a lease that began just after a renewal time is renewed at the next one, half a
lease later, plus the refresh's lag (at most one refresh period), so at least half a lease minus one refresh
period is left when it is renewed. A lease less than half left is due whatever the schedule (a lease
changed by configuration, a schedule that moved).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def renewal_period_ms(lease_s: int) -> int:
    """A building renews its leases every half lease."""
    if lease_s <= 0:
        raise ValueError(f"a lease must be positive, not {lease_s} s")
    return lease_s * 500


def _offset_ms(building: str, period_ms: int) -> int:
    digest = hashlib.blake2b(building.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % period_ms


def latest_renewal(building: str, lease_s: int, now: datetime) -> datetime:
    """The building's latest renewal time at or before ``now``."""
    period_us = renewal_period_ms(lease_s) * 1000
    since_us = (now - _EPOCH) // timedelta(microseconds=1) - _offset_ms(building, period_us // 1000) * 1000
    return now - timedelta(microseconds=since_us % period_us)


def next_renewal(building: str, lease_s: int, now: datetime) -> datetime:
    """The building's first renewal time after ``now``."""
    return latest_renewal(building, lease_s, now) + timedelta(milliseconds=renewal_period_ms(lease_s))


def due_if_ending_before(building: str, lease_s: int, now: datetime) -> datetime:
    """A lease ending before this is due at ``now``: it began before the building's latest renewal time. (Every
    lease with less than half of it left ends before it too: the latest renewal time is at most half a lease
    ago.) The form a database query takes."""
    return latest_renewal(building, lease_s, now) + timedelta(seconds=lease_s)


def renewal_due(building: str, lease_s: int, lease_until: datetime, now: datetime) -> bool:
    """Whether a limit acknowledged with a lease until ``lease_until`` must be sent again at ``now``."""
    return lease_until < due_if_ending_before(building, lease_s, now)
