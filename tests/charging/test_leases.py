"""The lease renewal schedule (apps/charging/leases.py): spread over the refreshes, never later than before."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.charging import leases

T0 = datetime(2026, 11, 30, 18, 0, 0, 123456, tzinfo=UTC)


def test_buildings_acknowledged_together_renew_in_different_refreshes():
    """After a restart every building's limits are acknowledged in the same minute. Renewed once half the lease
    is gone, all 100 would be sent again in the same refresh, and again every third one; on their schedules
    each of the three refreshes of a half lease renews about a third, and every one is renewed by the third."""
    lease_s, refresh_s = 180, 30
    buildings = [f"condo_{n:03d}" for n in range(100)]
    first: Counter[int] = Counter()
    for building in buildings:
        lease_until = T0 + timedelta(seconds=lease_s)
        cycle = next(k for k in range(1, 10)
                     if leases.renewal_due(building, lease_s, lease_until, T0 + timedelta(seconds=k * refresh_s + 1)))
        first[cycle] += 1
    assert set(first) == {1, 2, 3}, first
    assert max(first.values()) <= 45, first


def test_a_schedule_is_fixed_per_building_and_every_half_lease():
    building, lease_s = "condo_maple", 120
    latest = leases.latest_renewal(building, lease_s, T0)
    assert T0 - timedelta(seconds=60) < latest <= T0
    assert leases.next_renewal(building, lease_s, T0) == latest + timedelta(seconds=60)
    assert leases.latest_renewal(building, lease_s, latest) == latest  # a renewal time is its own latest
    assert leases.latest_renewal(building, lease_s, latest - timedelta(microseconds=1)) == latest - timedelta(
        seconds=60)
    assert (leases.latest_renewal(building, lease_s, T0 + timedelta(days=3, seconds=7)) - latest) % timedelta(
        seconds=60) == timedelta(0)
    # A lease that began before the latest renewal time is due; one that began after it is not, unless less
    # than half of it is left.
    assert leases.renewal_due(building, lease_s, latest - timedelta(seconds=1) + timedelta(seconds=lease_s), T0 +
                              timedelta(microseconds=1))
    assert not leases.renewal_due(building, lease_s, latest + timedelta(seconds=1 + lease_s), latest +
                                  timedelta(seconds=2))
    with pytest.raises(ValueError, match="a lease must be positive"):
        leases.latest_renewal(building, 0, T0)


@settings(max_examples=500, deadline=None)
@given(building=st.text(min_size=1, max_size=30), lease_s=st.integers(30, 3600), data=st.data())
def test_a_lease_is_renewed_with_at_least_half_of_it_left_less_one_refresh(building, lease_s, data):
    """What asks for a dispatch: events at any time (a changed limit, or the same asked again); the renewal
    queued for each of the building's renewal times (apps/ocpp/tasks.py: queue_renewal; lost with a worker,
    say); the catch-up every refresh period, when a lease is due; the balancer's refresh, for unchanged limits
    once a lease (its mark of what it asked lives that long). Each dispatch, a moment later, sends a changed
    limit or renews a due one. Whatever the timing and whichever renewals are lost, every renewal comes with at
    least half the lease left, less one refresh period and the dispatch's delay; with none lost, less only the
    renewal's and the dispatch's delays."""
    refresh_s = data.draw(st.integers(5, lease_s // 3), label="refresh_s")  # as the settings allow
    phase = data.draw(st.floats(0, refresh_s), label="refresh phase")
    delay_max, renewal_eta_s = 2.0, 0.2
    events = data.draw(st.lists(st.tuples(st.floats(0, 6 * lease_s), st.booleans()), max_size=12),
                       label="events (time, limit changed)")
    lose = data.draw(st.booleans(), label="some queued renewals are lost")
    at = lambda s: T0 + timedelta(seconds=s)  # noqa: E731
    seconds = lambda t: (t - T0).total_seconds()  # noqa: E731
    horizon = 7 * lease_s  # a lease past the last event
    ticks = [phase + k * refresh_s for k in range(int((horizon - phase) / refresh_s) + 1)]
    renewal_times = []
    t = leases.next_renewal(building, lease_s, at(0))
    while seconds(t) < horizon:
        renewal_times.append(seconds(t))
        t = leases.next_renewal(building, lease_s, t)
    timeline = sorted([(t, "catch-up", False) for t in ticks] + [(t, "refresh", False) for t in ticks]
                      + [(t + renewal_eta_s, "renewal", False) for t in renewal_times
                         if not (lose and data.draw(st.booleans(), label=f"renewal at {t:.1f} lost"))]
                      + [(t, "event", changed) for t, changed in events])
    began = 0.0  # the first limit was acknowledged at 0
    asked_until = lease_s  # the refresh's mark, set when it was asked
    renewals = 0
    for t, kind, changed in timeline:
        if t > horizon:
            break
        if kind == "catch-up" and not leases.renewal_due(building, lease_s, at(began + lease_s), at(t)):
            continue  # nothing due: no dispatch queued
        if kind == "refresh":
            if t < asked_until:
                continue  # the same limits as asked: nothing to ask
            asked_until = t + lease_s
        sent = t + data.draw(st.floats(0, delay_max), label="dispatch delay")
        left = began + lease_s - sent
        assert left > 0, "the lease ran out"
        if changed:
            began = max(began, sent)
        elif leases.renewal_due(building, lease_s, at(began + lease_s), at(sent)):
            assert left >= lease_s / 2 - (refresh_s if lose else renewal_eta_s) - delay_max - 0.001
            began, renewals = max(began, sent), renewals + 1
    assert renewals >= 1
