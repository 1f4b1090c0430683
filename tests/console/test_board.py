"""The console's picture (apps/console/board.py): pure, exact, and only what changed goes on the wire."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from decimal import Decimal as D

from apps.console.board import (
    CircuitInfo,
    ConnectorInfo,
    ConnectorNow,
    ConnectorRow,
    NodeRow,
    PhaseRow,
    RunInfo,
    SessionInfo,
    as_json,
    changes,
    picture,
)

T0 = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
THREE = (D(100), D(100), D(100))
TREE = [
    CircuitInfo("cabinet", "AC cabinet", "supply", (D(29), D(29), D(29))),
    CircuitInfo("supply", "Main supply", None, (D(155), D(155), D(155))),
    CircuitInfo("garage", "", "supply", THREE),
]
GUNS = [
    ConnectorInfo("CP-1#1", "CP-1", 1, "cabinet", "L2", spot="P01"),  # single-phase, wired to grid L2
    ConnectorInfo("CP-1#2", "CP-1", 2, "cabinet", "TRS"),  # three-phase: its L1 on grid L3, L2 on L1, L3 on L2
    ConnectorInfo("CP-2#1", "CP-2", 1, "garage", "L1"),
]


def now(l1=None, l2=None, l3=None, **kwargs) -> ConnectorNow:
    currents = tuple(D(str(a)) if a is not None else None for a in (l1, l2, l3))
    return ConnectorNow(online=True, currents_a=currents, **kwargs)


def run(limits=None, nodes=None, at=T0, run_id=1) -> RunInfo:
    return RunInfo(run_id=run_id, started_at=at, limits=limits or {}, nodes=nodes or {})


def phases(pic, key):
    node = next(n for n in pic.nodes if n.key == key)
    return {p.phase: p for p in node.phases}


def test_the_tree_is_shown_from_the_supply_down_with_each_nodes_depth():
    pic = picture(TREE, GUNS, {}, {}, None)
    assert [(n.key, n.depth) for n in pic.nodes] == [("supply", 0), ("cabinet", 1), ("garage", 1)]
    assert [n.name for n in pic.nodes] == ["Main supply", "AC cabinet", "garage"]  # no name: its key
    # A node whose parent is not in the tree (being edited) is shown anyway, not dropped.
    orphan = picture([*TREE, CircuitInfo("lost", "", "gone", THREE)], [], {}, {}, None)
    assert ("lost", 0) in [(n.key, n.depth) for n in orphan.nodes]


def test_each_node_carries_what_the_chargers_below_it_draw_on_each_grid_phase():
    states = {"CP-1#1": now(16), "CP-1#2": now(10, 11, 12), "CP-2#1": now(None, D("7.25"))}
    pic = picture(TREE, GUNS, states, {}, None)
    cabinet = phases(pic, "cabinet")
    # CP-1#1: 16 A on grid L2. CP-1#2 (TRS): its L1 (10) on grid L3, its L2 (11) on L1, its L3 (12) on L2.
    assert (cabinet["L1"].ev_a, cabinet["L2"].ev_a, cabinet["L3"].ev_a) == (D("11.0"), D("28.0"), D("10.0"))
    # A single-phase connector's current counts on its grid phase whatever phase the charger named.
    garage = phases(pic, "garage")
    assert (garage["L1"].ev_a, garage["L2"].ev_a) == (D("7.3"), D("0.0"))  # rounded half up to a tenth
    supply = phases(pic, "supply")
    assert (supply["L1"].ev_a, supply["L2"].ev_a, supply["L3"].ev_a) == (D("18.3"), D("28.0"), D("10.0"))


def test_without_a_run_the_rest_of_the_load_is_unknown_not_zero():
    pic = picture(TREE, GUNS, {"CP-1#1": now(16)}, {}, None)
    cabinet = phases(pic, "cabinet")
    assert cabinet["L2"].other_a is None
    assert cabinet["L2"].load_a == D(16) and cabinet["L2"].limit_a == D(29)  # the circuit's usable limit
    assert cabinet["L2"].percent == 55 and cabinet["L2"].level == "ok"
    assert pic.run_at is None


def test_the_runs_view_of_the_other_load_and_its_limits_complete_the_nodes_load():
    seen = {"cabinet": {"capacity_a": ["29.0", "29.0", "28.5"], "non_ev_a": ["0", "0", "0"],
                        "unmanaged_a": ["0", "3.5", "0"], "planned_a": ["0", "16", "0"]},
            "supply": {"capacity_a": ["155", "155", "155"], "non_ev_a": ["120.4", "130", "150"],
                       "unmanaged_a": ["0", "0", "0"]}}
    pic = picture(TREE, GUNS, {"CP-1#1": now(16), "CP-1#2": now(8, 8, 8)}, {}, run(nodes=seen))
    cabinet, supply = phases(pic, "cabinet"), phases(pic, "supply")
    assert cabinet["L2"].other_a == D("3.5") and cabinet["L2"].load_a == D("27.5")  # 16 + 8 + 3.5
    assert cabinet["L2"].percent == 95 and cabinet["L2"].level == "high"
    assert cabinet["L3"].limit_a == D("28.5")  # the run's capacity wins over the circuit's rating
    assert supply["L3"].load_a == D("158.0") and supply["L3"].level == "over" and supply["L3"].percent == 102
    assert supply["L1"].other_a == D("120.4")
    # The garage was not in the run: its rest is unknown.
    assert phases(pic, "garage")["L1"].other_a is None
    # A run record that does not read (a hand-edited row) counts as unknown, never as a crash.
    odd = picture(TREE, GUNS, {}, {}, run(nodes={"cabinet": {"capacity_a": ["x", 1, 2], "non_ev_a": "?"}}))
    assert phases(odd, "cabinet")["L1"].other_a is None and phases(odd, "cabinet")["L1"].limit_a == D(29)


def test_a_phase_without_a_limit_has_no_percentage():
    single = [CircuitInfo("supply", "", None, (D(63), D(0), D(0)))]
    pic = picture(single, [ConnectorInfo("A#1", "A", 1, "supply", "L1")], {"A#1": now(10)}, {}, None)
    assert [(p.phase, p.percent, p.level) for p in pic.nodes[0].phases] == [
        ("L1", 16, "ok"), ("L2", None, "ok"), ("L3", None, "ok")]


def test_each_connector_shows_its_limit_the_reason_and_whose_session_it_is():
    limits = {"CP-1#1": {"a": "14.4", "w": None, "why": "node-current", "sentence": "cabinet L2 is full"},
              "CP-2#1": {"a": None, "w": 22000, "why": "connector-max", "sentence": "its own maximum"}}
    sessions = {"CP-1#1": SessionInfo(transaction_id=7, resident="Alice", unit="101")}
    states = {"CP-1#1": now(14.4, power_w=D("3312.4"), session_energy_wh=12345, status="Charging",
                            error_code="NoError", transaction_id=7),
              "CP-1#2": now(status="Faulted", error_code="GroundFailure", session_energy_wh=50)}
    pic = picture(TREE, GUNS, states, sessions, run(limits=limits))
    rows = {c.key: c for c in pic.connectors}
    one = rows["CP-1#1"]
    assert (one.limit, one.why, one.sentence) == ("14.4 A", "node-current", "cabinet L2 is full")
    assert (one.resident, one.unit, one.session_kwh, one.power_kw) == ("Alice", "101", D("12.35"), D("3.3"))
    assert (one.status, one.error_code, one.spot, one.online) == ("Charging", "", "P01", True)
    assert rows["CP-2#1"].limit == "22000 W"
    two = rows["CP-1#2"]
    assert (two.limit, two.error_code, two.session_kwh) == ("", "GroundFailure", None)  # energy of no session
    assert rows["CP-2#1"].online is False and rows["CP-2#1"].status == ""  # silent: offline, nothing reported
    assert [c.key for c in pic.connectors] == ["CP-1#1", "CP-1#2", "CP-2#1"]


def test_the_first_push_is_everything_and_each_next_only_what_changed():
    states = {"CP-1#1": now(16, status="Charging")}
    first = as_json(picture(TREE, GUNS, states, {}, run()))
    full = changes(None, first)
    assert full["full"] is True and len(full["connectors"]) == 3 and len(full["nodes"]) == 3
    assert full["connectors"][0]["currents_a"] == ["16.0", None, None]  # exact decimals as strings
    assert changes(first, as_json(picture(TREE, GUNS, states, {}, run()))) == {}
    moved = as_json(picture(TREE, GUNS, {"CP-1#1": now(12, status="Charging")}, {}, run()))
    delta = changes(first, moved)
    assert [row["key"] for row in delta["connectors"]] == ["CP-1#1"]
    assert {row["key"] for row in delta["nodes"]} == {"cabinet", "supply"}  # the garage did not change
    assert "run_at" not in delta
    later = as_json(picture(TREE, GUNS[:2], {"CP-1#1": now(12, status="Charging")}, {}, run(at=T0.replace(hour=21))))
    delta = changes(moved, later)
    assert delta["connectors_gone"] == ["CP-2#1"] and delta["run_at"] == "2026-03-01T21:00:00+00:00"


def test_the_wire_carries_every_field_of_every_row():
    """The page's script reads rows by field name: a field added to a row and forgotten on the wire would leave
    the page showing its first value for ever."""
    wire = as_json(picture(TREE, GUNS, {"CP-1#1": now(16)}, {}, run()))
    assert set(wire["connectors"]["CP-1#1"]) == {f.name for f in fields(ConnectorRow)}
    assert set(wire["nodes"]["cabinet"]) == {f.name for f in fields(NodeRow)}
    assert set(wire["nodes"]["cabinet"]["phases"][0]) == {f.name for f in fields(PhaseRow)}
