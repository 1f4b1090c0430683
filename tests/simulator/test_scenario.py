"""Scenario files: parsing with errors that name the file, the path and the line; reproducible plans."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from apps.commissioning.schema import load as load_commissioning
from apps.simulator import scenario
from apps.simulator.model import ChargerConfig, ConnectorConfig

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
CHARGERS = [
    ChargerConfig("CAB-A", (ConnectorConfig(1), ConnectorConfig(2))),
    ChargerConfig("DC-1", (ConnectorConfig(1, phases=3, max_current_a=None, dc=True, max_power_w=30000),)),
]


def problems(text: str, source: str = "rush.yaml") -> list[str]:
    with pytest.raises(scenario.ScenarioError) as caught:
        scenario.load(text, source)
    return str(caught.value).splitlines()


def test_an_empty_file_is_the_default_scenario():
    assert scenario.load("") == scenario.Scenario()


def test_errors_name_the_file_the_path_and_the_line():
    text = (
        "description: x\n"
        "arrivals:\n"
        "  per_connector_per_day: -1\n"
        "  stay_minutes: [600, 60]\n"
        "evs:\n"
        "  - {charger: CAB-A, connector: 1, stay_min: 30}\n"
        "  - {charger: CAB-A, connector: 0, stay_min: 30, batery_kwh: 60}\n"
    )
    lines = problems(text)
    assert "rush.yaml: arrivals.per_connector_per_day (line 3): input should be greater than or equal to 0" in lines
    assert "rush.yaml: arrivals.stay_minutes (line 4): give [lowest, highest], not [600, 60]" in lines
    assert "rush.yaml: evs[1].connector (line 7): input should be greater than or equal to 1" in lines
    assert "rush.yaml: evs[1].batery_kwh (line 7): is not a known key (see docs/simulator.md)" in lines
    assert len(lines) == 4


def test_bad_yaml_and_a_wrong_top_level_are_reported_with_their_line():
    assert problems("evs: [\n  {charger: x\n")[0].startswith("rush.yaml: (top level) (line 3): not valid YAML")
    assert problems("- a\n- b\n") == [
        "rush.yaml: (top level) (line 1): a scenario is a mapping (description, arrivals, fleet, evs)"]


def test_a_visit_naming_an_unknown_charger_or_connector_is_refused_with_its_line():
    text = "evs:\n  - {charger: CAB-A, connector: 3, stay_min: 30}\n  - {charger: NOPE, connector: 1, stay_min: 30}\n"
    spec = scenario.load(text, "rush.yaml")
    with pytest.raises(scenario.ScenarioError) as caught:
        scenario.plan(spec, CHARGERS, id_tags=[], start=START, horizon=timedelta(hours=1), seed=1,
                      source="rush.yaml", text=text)
    assert str(caught.value).splitlines() == [
        "rush.yaml: evs[0].connector (line 2): charger 'CAB-A' has no connector 3",
        "rush.yaml: evs[1].charger (line 3): no charger 'NOPE' in this building",
    ]


def test_numbers_are_decimal_not_float():
    spec = scenario.load("evs:\n  - {charger: CAB-A, connector: 1, stay_min: 30, max_current_a: 10.1}\n")
    assert spec.evs[0].max_current_a == Decimal("10.1")
    planned = scenario.plan(spec, CHARGERS, id_tags=["T1"], start=START, horizon=timedelta(hours=1), seed=1)
    ev = planned.evs["CAB-A"][0]
    assert ev.max_current_a == Decimal("10.1") and ev.id_tag == "T1"
    assert isinstance(ev.battery_wh, int) and isinstance(ev.energy_wh, int)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another():
    spec = scenario.Scenario()
    plans = [scenario.plan(spec, CHARGERS, id_tags=["A", "B", "C"], start=START, horizon=timedelta(days=2), seed=s)
             for s in (5, 5, 6)]
    assert plans[0] == plans[1]
    assert plans[0] != plans[2]
    evs = plans[0].evs["CAB-A"]
    assert evs and all(ev.id_tag in {"A", "B", "C"} for ev in evs)
    for earlier, later in itertools.pairwise(evs):
        if earlier.connector_id == later.connector_id:
            assert later.arrival > earlier.departure  # one EV at a time on a connector


def test_adding_a_charger_does_not_change_the_others_evs():
    spec = scenario.Scenario()
    alone = scenario.plan(spec, CHARGERS[:1], id_tags=["A"], start=START, horizon=timedelta(days=1), seed=3)
    both = scenario.plan(spec, CHARGERS, id_tags=["A"], start=START, horizon=timedelta(days=1), seed=3)
    assert alone.evs["CAB-A"] == both.evs["CAB-A"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_example_scenarios_fit_the_example_buildings(path):
    spec = scenario.load(path.read_text(), str(path))
    fitting = []
    for building in sorted((ROOT / "examples").glob("*.yaml")):
        commissioning = load_commissioning(building.read_text(), str(building))
        chargers = [ChargerConfig(c.id, tuple(ConnectorConfig(n.id) for n in c.connectors))
                    for c in commissioning.chargers]
        named = {v.charger for v in spec.evs}
        if named and not named <= {c.charge_point_id for c in chargers}:
            continue  # written for another building
        planned = scenario.plan(spec, chargers, id_tags=["X"], start=START, horizon=timedelta(hours=12), seed=1)
        assert sum(len(v) for v in planned.evs.values()) > 0, building.name
        fitting.append(building.name)
    assert fitting, f"{path.name} names chargers of no example building"  # else nothing above was checked
