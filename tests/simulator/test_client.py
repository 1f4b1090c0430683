"""The network side without a network: what a charger keeps while offline, and its clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.simulator.client import ChargerRunner, SimClock
from tests.simulator.helpers import T0, charger, ev


def test_offline_the_charger_authorizes_locally_and_keeps_only_transaction_messages():
    sim = charger(ev(minutes=10), interval=60)
    runner = ChargerRunner(sim, url="ws://127.0.0.1:1/ocpp/", password="x", clock=SimClock(1, T0))
    runner.enqueue(sim.advance(T0))  # Preparing (dropped), Authorize (decided locally) -> StartTransaction (kept)
    runner.enqueue(sim.advance(T0 + timedelta(minutes=3)))
    assert [m.action for m in runner.queue] == ["StartTransaction", "MeterValues", "MeterValues", "MeterValues"]
    assert runner.stats.dropped == 2  # StatusNotification Preparing and Charging
    assert runner.url == "ws://127.0.0.1:1/ocpp/SIM-1"


def test_online_everything_is_queued_in_order():
    sim = charger(ev(minutes=10))
    runner = ChargerRunner(sim, url="ws://h/ocpp", password="x", clock=SimClock(1, T0))
    runner.connected = True
    runner.enqueue(sim.advance(T0))
    assert [m.action for m in runner.queue] == ["StatusNotification", "Authorize"]
    runner._offline()
    assert list(runner.queue) == []


def test_a_fast_clock_never_runs_ahead_of_the_wall_clock():
    wall = [1_000_000.0]
    start = datetime.fromtimestamp(wall[0], UTC) - timedelta(minutes=10)
    clock = SimClock(60, start, catch_up=True, wall=lambda: wall[0])
    assert clock.now() == start
    wall[0] += 5
    assert clock.now() == start + timedelta(minutes=5)
    wall[0] += 60
    assert clock.now() == datetime.fromtimestamp(wall[0], UTC)  # caught up: real time from now on
    assert SimClock(10, start, catch_up=False, wall=lambda: wall[0]).now() == start


def test_the_platform_sees_a_simulated_moment_when_the_fast_clock_reaches_it():
    wall = [1_000_000.0]
    now = datetime.fromtimestamp(wall[0], UTC)
    start = now - timedelta(minutes=60)
    clock = SimClock(10, start, catch_up=True, wall=lambda: wall[0])
    # 10x: a simulated hour from the start is 6 real minutes away...
    assert clock.wall_at(start + timedelta(minutes=30)) == now + timedelta(minutes=3)
    assert clock.wall_at(start) == now
    # ...but the simulated clock never passes the wall clock: a moment past the present comes in real time.
    later = now + timedelta(hours=2)
    assert clock.wall_at(later) == later
    assert SimClock(10, start, catch_up=False, wall=lambda: wall[0]).wall_at(later) == now + timedelta(minutes=18)
    # At 1x from now, the platform sees the simulated moment itself.
    assert SimClock(1, now, wall=lambda: wall[0]).wall_at(later) == later
