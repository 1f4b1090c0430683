"""The simulated residents who state their cars' needs: who speaks, what they say and when (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from apps.simulator import scenario
from apps.simulator.residents import MAX_ENERGY_WH, Habits, OpenSession, Residents, needs_of
from tests.simulator.helpers import T0, ev

# Four hundred visits on a few chargers over a few days, every one charging for long enough to bother; each is
# named as Residents names it: its charger, connector and rank there.
VISITS = [(f"CAB-{n % 5}#{1 + n % 2}/{n // 10}",
           ev(connector=1 + n % 2, minutes=120 + n % 400, battery_kwh=40 + n % 60, soc=n % 70, arrive_s=n * 1800 + n % 7))
          for n in range(400)]
EVERYONE = Habits(state_needs_percent=100)


def said(habits: Habits, seed: int = 7) -> dict[int, object]:
    return {i: needs for i, (name, visit) in enumerate(VISITS)
            if (needs := needs_of(visit, name, seed=seed, habits=habits)) is not None}


def test_the_same_seed_gives_the_same_words_and_another_seed_other_ones():
    assert said(Habits()) == said(Habits())
    assert said(Habits()) != said(Habits(), seed=8)


def test_a_share_of_the_residents_speaks_and_0_and_100_percent_are_exact():
    assert said(Habits(state_needs_percent=0)) == {}
    assert len(said(EVERYONE)) == len(VISITS)  # every car here needs energy and stays long enough
    assert 0.62 * len(VISITS) <= len(said(Habits())) <= 0.78 * len(VISITS)  # the default, 70 %
    assert Habits().state_needs_percent == 70


def test_the_share_decides_only_who_speaks_never_what_they_say():
    some, all_ = said(Habits(state_needs_percent=30)), said(EVERYONE)
    assert some and set(some) < set(all_)
    assert all(all_[i] == needs for i, needs in some.items())


def test_exact_residents_say_what_the_car_needs_to_be_full_and_when_they_leave_to_the_minute():
    exact = Habits(state_needs_percent=100, rounded_percent=0)
    for name, visit in VISITS:
        needs = needs_of(visit, name, seed=3, habits=exact)
        assert needs is not None and not needs.rounded
        assert needs.energy_wh == visit.battery_wh - visit.energy_wh
        assert needs.ready_by == visit.departure.replace(second=0)


def test_rounding_residents_say_whole_kwh_and_the_nearest_quarter_hour():
    rounding = Habits(state_needs_percent=100, rounded_percent=100)
    for name, visit in VISITS:
        needs = needs_of(visit, name, seed=3, habits=rounding)
        assert needs is not None and needs.rounded
        assert needs.energy_wh % 1000 == 0 and needs.energy_wh >= 1000
        assert abs(needs.energy_wh - (visit.battery_wh - visit.energy_wh)) <= 500
        assert needs.ready_by.minute % 15 == 0 and needs.ready_by.second == 0
        assert abs(needs.ready_by - visit.departure) <= timedelta(minutes=7, seconds=30)
    # Half of them by default, drawn per resident.
    kinds = [n.rounded for n in said(EVERYONE).values()]
    assert 0.4 * len(kinds) <= sum(kinds) <= 0.6 * len(kinds)


def test_a_target_below_full_asks_for_less_and_a_car_already_there_says_nothing():
    to_80 = Habits(state_needs_percent=100, rounded_percent=0, target_soc_percent=(80, 80))
    assert needs_of(ev(battery_kwh=60, soc=20), "CAB-1#1/0", seed=1, habits=to_80).energy_wh == 36_000
    assert needs_of(ev(battery_kwh=60, soc=85), "CAB-1#1/0", seed=1, habits=to_80) is None
    full = Habits(state_needs_percent=100)
    assert needs_of(ev(battery_kwh=60, soc=100), "CAB-1#1/0", seed=1, habits=full) is None
    # Never more than the endpoint takes from one session.
    big = ev(battery_kwh=250, soc=0)
    assert needs_of(big, "CAB-1#1/0", seed=1, habits=full).energy_wh == MAX_ENERGY_WH


def test_nobody_speaks_about_a_car_leaving_within_a_quarter_hour():
    quick = Habits(state_needs_percent=100, delay_s=(60, 60), rounded_percent=0)
    # Speaking a minute after plugging in: 14 minutes' notice is not worth it, 15 are.
    assert needs_of(ev(minutes=15), "CAB-1#1/0", seed=1, habits=quick) is None
    assert needs_of(ev(minutes=16), "CAB-1#1/0", seed=1, habits=quick) is not None


def test_each_resident_speaks_once_some_seconds_after_their_session_started():
    habits = Habits(state_needs_percent=100, delay_s=(30, 300))
    visit, later, other = ev(minutes=300), ev(minutes=300, arrive_s=6 * 3600), ev(minutes=300)
    residents = Residents({"CAB-1": [later, visit], "CAB-2": [other]}, seed=5, habits=habits)
    assert residents.speaking == 3
    started = T0 + timedelta(seconds=4)  # the Authorize and StartTransaction round trips
    session = OpenSession("CAB-1", visit, started, transaction_id=41)
    delay = residents.needs(visit, "CAB-1").delay_s
    assert 30 <= delay <= 300
    assert residents.due([session], started + timedelta(seconds=delay - 1)) == []
    [statement] = residents.due([session], started + timedelta(seconds=delay))
    assert statement.at == started + timedelta(seconds=delay)
    assert statement.needs == needs_of(visit, "CAB-1#1/0", seed=5, habits=habits)  # the connector's first visit
    assert residents.needs(later, "CAB-1") == needs_of(later, "CAB-1#1/1", seed=5, habits=habits)
    assert residents.due([session], started + timedelta(seconds=delay + 60)) == []
    # A session the simulation learns of late (the charger was offline) is spoken of at once...
    late = OpenSession("CAB-1", later, T0 + timedelta(hours=6), transaction_id=42)
    assert len(residents.due([late], T0 + timedelta(hours=8))) == 1
    # ...unless the car is about to leave by then; and a visit that is not in the plan has nobody to speak.
    gone = OpenSession("CAB-2", other, T0, transaction_id=43)
    assert residents.due([gone], T0 + timedelta(minutes=300)) == []
    assert residents.due([gone], T0 + timedelta(minutes=10)) == []  # done with: never spoken of
    assert residents.due([OpenSession("CAB-3", other, T0, 44)], T0 + timedelta(hours=1)) == []


def test_the_words_do_not_depend_on_when_the_run_starts():
    habits = Habits(state_needs_percent=50)
    plan = {"CAB-1": [ev(connector=n % 2 + 1, arrive_s=n * 7200, minutes=100 + n) for n in range(40)]}
    shift = timedelta(days=3, minutes=7)
    moved = {"CAB-1": [replace(e, arrival=e.arrival + shift, departure=e.departure + shift) for e in plan["CAB-1"]]}
    here, there = Residents(plan, seed=9, habits=habits), Residents(moved, seed=9, habits=habits)
    for e, m in zip(plan["CAB-1"], moved["CAB-1"], strict=True):
        a, b = here.needs(e, "CAB-1"), there.needs(m, "CAB-1")
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.energy_wh, a.delay_s, a.rounded) == (b.energy_wh, b.delay_s, b.rounded)
    assert 10 <= here.speaking <= 30


def test_the_delays_are_drawn_within_their_range_and_spread():
    delays = {n.delay_s for n in said(Habits(state_needs_percent=100, delay_s=(30, 300))).values()}
    assert min(delays) >= 30 and max(delays) <= 300 and len(delays) > 100


def test_bad_habits_are_refused():
    with pytest.raises(ValueError, match="percentage"):
        Habits(state_needs_percent=101)
    with pytest.raises(ValueError, match="delay_s"):
        Habits(delay_s=(300, 30))
    with pytest.raises(ValueError, match="target_soc_percent"):
        Habits(target_soc_percent=(0, 100))


def test_the_scenario_sets_the_habits_and_the_command_line_only_the_share():
    assert scenario.load("").residents.habits() == Habits()
    spec = scenario.load("residents:\n  state_needs_percent: 40\n  delay_s: [10, 60]\n  rounded_percent: 0\n"
                         "  target_soc_percent: [80, 90]\n")
    assert spec.residents.habits() == Habits(40, (10, 60), 0, (80, 90))
    assert spec.residents.habits(100) == Habits(100, (10, 60), 0, (80, 90))
    assert spec.residents.habits(0).state_needs_percent == 0
    with pytest.raises(scenario.ScenarioError) as caught:
        scenario.load("residents:\n  state_needs_percent: 120\n  delay_s: [60, 10]\n", "r.yaml")
    lines = str(caught.value).splitlines()
    assert "r.yaml: residents.state_needs_percent (line 2): input should be less than or equal to 100" in lines
    assert "r.yaml: residents.delay_s (line 3): give [lowest, highest], not [60, 10]" in lines

