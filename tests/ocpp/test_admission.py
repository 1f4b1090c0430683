"""Admission control (apps/ocpp/admission.py), pure: the bound is the time the work in progress takes at the
measured rate, and those told to come back return at that rate.

The rule, then the proof: a process never refuses below its count (the first wave, a slow machine); takes
more only while the measured rate finishes them within the budget, up to the ceiling; forgets a rate that is
no longer current; and spreads the chargers it tells to come back so that the storm's last one is served
about when the process could have served it, not at the end of a fixed interval.
"""

from __future__ import annotations

import heapq
import random

from apps.ocpp import admission
from apps.ocpp.admission import Gate


def measured(rate_per_s: int, at: float = 100.0) -> Gate:
    """A gate that freed ``rate_per_s`` places a second over the whole window, up to ``at``."""
    gate = Gate()
    count = int(rate_per_s * gate.window_s)
    for n in range(count):
        gate.in_progress += 1
        gate.leave(at - gate.window_s + n * gate.window_s / count)
    return gate


def test_before_any_rate_the_count_is_the_bound():
    gate = Gate()
    assert gate.rate(0.0) is None
    assert all(gate.enter(3, 0.0, budget_s=10) for _ in range(3))
    assert not gate.enter(3, 0.0, budget_s=10)
    assert (gate.in_progress, gate.refused) == (3, 1)


def test_a_measured_rate_takes_what_it_finishes_within_the_budget_up_to_the_ceiling():
    gate = measured(50)
    assert gate.rate(100.0) == 50
    assert gate.allowed(100, 100.0, budget_s=10) == 500  # 50/s x 10 s
    assert gate.allowed(100, 100.0, budget_s=10, ceiling=300) == 300
    assert gate.allowed(1000, 100.0, budget_s=10) == 1000  # never below the count
    assert gate.allowed(100, 100.0, budget_s=0) == 100  # no budget: the count only
    assert gate.allowed(50, 100.0, budget_s=100) == admission.CEILING_FACTOR * 50
    assert gate.allowed(0, 100.0, budget_s=10) == 0  # a count of 0 refuses everything, whatever the rate
    gate.in_progress = 499
    assert gate.enter(100, 100.0, budget_s=10)
    assert not gate.enter(100, 100.0, budget_s=10)


def test_a_storm_s_first_instants_are_measured_over_the_time_they_took():
    gate = Gate()
    for n in range(30):  # 30 places freed in the first 0.6 s of work: 50 a second, not 30 over the 5 s window
        gate.in_progress += 1
        gate.leave(10.0 + n * 0.02)
    assert 45 < gate.rate(10.6) < 55
    assert gate.rate(10.59 + 0.001) is not None


def test_a_rate_no_longer_current_is_forgotten():
    gate = measured(50, at=100.0)
    assert gate.rate(100.0) == 50
    assert 9 < gate.rate(104.0) < 11  # only the last second's 50 places are still in the 5 s window
    assert gate.rate(106.0) is None
    assert gate.allowed(100, 106.0, budget_s=10) == 100


def test_without_a_rate_come_back_after_a_jittered_interval():
    rng = random.Random(1)
    intervals = {Gate().appointment(0.0, rng) for _ in range(50)}
    assert all(admission.PENDING_INTERVAL_S[0] <= i <= admission.PENDING_INTERVAL_S[1] for i in intervals)
    assert len(intervals) > 5


def test_appointments_start_when_the_work_in_progress_is_done_and_follow_at_the_rate():
    gate = measured(40)
    gate.in_progress = 200  # 5 s of work
    rng = random.Random(1)
    intervals = [gate.appointment(100.0, rng) for _ in range(400)]  # 400 told to come back at once
    assert intervals[0] == 5
    assert intervals == sorted(intervals)
    per_second = {s: intervals.count(s) for s in set(intervals)}
    assert max(per_second.values()) <= 40 + 1  # they return at the rate the process finishes them
    assert intervals[-1] == 5 + 10  # 400 at 40/s after the 5 s of work in progress
    gate.in_progress = 10_000
    assert gate.appointment(100.0, rng) == admission.PENDING_MAX_S
    gate = measured(40)
    gate.in_progress = 0
    assert gate.appointment(100.0, rng) == admission.PENDING_MIN_S


def simulate_boots(chargers: int, per_s: int, *, appointments: bool, limit: int = 500, spread_s: float = 5,
                   seed: int = 1) -> float:
    """A process that finishes ``per_s`` boots a second, ``limit`` at most in progress (the count only), and
    ``chargers`` booting within the first ``spread_s`` (a restart: their back-off spreads them); those refused
    come back when told, keeping their appointment. When the last boot is done."""
    rng = random.Random(seed)
    gate = Gate()
    events: list[tuple[float, int, str]] = [(rng.uniform(0, spread_s), n, "boot") for n in range(chargers)]
    heapq.heapify(events)
    told: set[int] = set()
    free_at = 0.0  # the process finishes one boot each 1/per_s, in the order taken
    last = 0.0
    while events:
        now, n, kind = heapq.heappop(events)
        if kind == "done":
            gate.leave(now)
            last = max(last, now)
        elif gate.enter(limit, now, appointment=appointments and n in told):
            free_at = max(free_at, now) + 1 / per_s
            heapq.heappush(events, (free_at, n, "done"))
        else:
            told.add(n)
            interval = gate.appointment(now, rng) if appointments else rng.randint(*admission.PENDING_INTERVAL_S)
            heapq.heappush(events, (now + interval, n, "boot"))
    return last


def test_a_storm_told_to_come_back_by_appointment_ends_when_the_work_does():
    # 2,000 boots at 100 a second take 20 s of work.
    fixed = simulate_boots(2000, 100, appointments=False)
    by_appointment = simulate_boots(2000, 100, appointments=True)
    assert by_appointment <= 20 + 2 * admission.PENDING_MIN_S + 1
    assert by_appointment < fixed - 10, (by_appointment, fixed)
    # Newcomers still arriving while the first told to come back return (chargers back over 10 s).
    fixed = simulate_boots(2000, 100, appointments=False, spread_s=10)
    by_appointment = simulate_boots(2000, 100, appointments=True, spread_s=10)
    assert by_appointment <= 20 + 2 * admission.PENDING_MIN_S + 2
    assert by_appointment < fixed - 5, (by_appointment, fixed)


def test_one_back_at_its_appointment_is_taken_up_to_the_ceiling():
    gate = measured(40)
    gate.in_progress = 100
    assert not gate.enter(100, 100.0, budget_s=1)
    assert gate.enter(100, 100.0, budget_s=1, appointment=True)
    gate.in_progress = admission.CEILING_FACTOR * 100
    assert not gate.enter(100, 100.0, budget_s=1, appointment=True)
