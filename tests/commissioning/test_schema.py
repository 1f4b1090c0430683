"""The commissioning file format: what is accepted, and how refusals name the place (no database)."""

from decimal import Decimal
from pathlib import Path

import pytest

from apps.commissioning.schema import CommissioningError, load

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))

BASE = """\
company: {slug: acme-pm, name: Acme}
condominium:
  slug: test-elm
  name: Elm
  domains: [test-elm.localhost]
  timezone: America/Los_Angeles
  currency: USD
electrical:
  supply: {voltage_v: 230, phases: 3, max_current_a: 200, derate: 0.8, margin_a: 5}
  circuits:
    - {id: cabinet-a, parent: supply, max_current_a: 32, max_power_w: 20000}
chargers:
  - id: ELM-1
    password: "elm-secret-00000001"
    circuit: cabinet-a
    connectors:
      - {id: 1, max_current_a: 32, phases: 1, phase_rotation: L1, parking_spot: P01}
      - {id: 2, max_current_a: 32, phases: 1, phase_rotation: L2}
units:
  - {number: "101", parking_spots: [P01]}
people:
  - {email: a@example.com, name: A, unit: "101", roles: [resident], id_tags: ["04a1"]}
"""


def refuse(text: str) -> list[str]:
    with pytest.raises(CommissioningError) as info:
        load(text, "elm.yaml")
    return [p.format("elm.yaml") for p in info.value.problems]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_file_is_valid(path):
    spec = load(path.read_text(), str(path))
    assert spec.chargers and spec.people


def test_numbers_are_exact_decimals_and_tags_upper_case():
    spec = load(BASE)
    assert spec.electrical.supply.derate == Decimal("0.8")
    assert isinstance(spec.electrical.supply.derate, Decimal)
    assert spec.electrical.supply.max_current_a == (Decimal(200),) * 3
    assert spec.people[0].id_tags == ["04A1"]
    assert spec.chargers[0].connectors[0].effective_min_current_a == Decimal(6)


def test_per_phase_limits():
    spec = load(BASE.replace("max_current_a: 200,", "max_current_a: [200, 180, 160.5],"))
    assert spec.electrical.supply.max_current_a == (Decimal("200"), Decimal("180"), Decimal("160.5"))
    assert refuse(BASE.replace("max_current_a: 200,", "max_current_a: [200, 180],")) == [
        "elm.yaml: electrical.supply.max_current_a (line 9): give one current for all phases, or a list of three (L1, L2, L3)"
    ]


def test_negative_current_names_path_and_line():
    problems = refuse(BASE.replace("{id: 2, max_current_a: 32", "{id: 2, max_current_a: -5"))
    assert problems == ["elm.yaml: chargers[0].connectors[1].max_current_a (line 18): input should be greater than 0"]


def test_unknown_key():
    problems = refuse(BASE.replace("currency: USD", "currency: USD\n  colour: blue"))
    assert problems == ["elm.yaml: condominium.colour (line 8): is not a known key (see docs/commissioning.md)"]


def test_missing_key():
    problems = refuse(BASE.replace('    password: "elm-secret-00000001"\n', ""))
    assert problems == [
        "elm.yaml: chargers[0] (line 13): a charger needs its Basic-auth password (OCPP security profile 1)"
    ]


def test_yaml_syntax_error_has_a_line():
    problems = refuse(BASE.replace("currency: USD", "currency: [USD"))
    assert len(problems) == 1 and problems[0].startswith("elm.yaml: (top level) (line ")
    assert "not valid YAML" in problems[0]


def test_not_a_mapping():
    assert refuse("- just\n- a list\n") == [
        "elm.yaml: (top level) (line 1): the file must be a mapping with company, condominium, ..."
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "timezone: America/Los_Angeles",
            "timezone: Mars/Olympus",
            "condominium.timezone (line 6): 'Mars/Olympus' is not an IANA time zone",
        ),
        (
            "currency: USD",
            "currency: usd",
            "condominium.currency (line 7): 'usd' has characters that are not allowed here",
        ),
        (
            "parent: supply",
            "parent: nowhere",
            "electrical.circuits[0].parent (line 11): no circuit 'nowhere' (nor 'supply')",
        ),
        (
            "circuit: cabinet-a",
            "circuit: cabinet-z",
            "chargers[0].circuit (line 15): no circuit 'cabinet-z' (nor 'supply')",
        ),
        (
            "phase_rotation: L2}",
            "phase_rotation: RST}",
            "chargers[0].connectors[1] (line 18): phase_rotation 'RST' does not fit a 1-phase connector",
        ),
        (
            "{id: 2, max_current_a: 32,",
            "{id: 1, max_current_a: 32,",
            "chargers[0] (line 13): connector ids must be unique within a charger",
        ),
        (
            "{id: 2, max_current_a: 32, phases: 1, phase_rotation: L2}",
            "{id: 2, dc: true}",
            "chargers[0].connectors[1] (line 18): a DC connector needs max_power_w",
        ),
        (
            "{id: 2, max_current_a: 32, phases: 1, phase_rotation: L2}",
            "{id: 2, phases: 1}",
            "chargers[0].connectors[1] (line 18): an AC connector needs max_current_a",
        ),
        ("derate: 0.8", "derate: 1.5", "electrical.supply.derate (line 9): input should be less than or equal to 1"),
        ('roles: [resident], id_tags: ["04a1"]', "roles: [resident]", None),
        ('unit: "101", roles: [resident]', "roles: [resident]", "people[0] (line 22): a resident needs a unit"),
        ("a@example.com", "not-an-email", "people[0].email (line 22): 'not-an-email' is not an e-mail address"),
        ("id: ELM-1", "id: ELM/1", "chargers[0].id (line 13): 'ELM/1' has characters that are not allowed here"),
    ],
)
def test_refusals(old, new, expected):
    assert old in BASE
    text = BASE.replace(old, new)
    if expected is None:
        load(text)
        return
    problems = refuse(text)
    assert any(p.startswith(f"elm.yaml: {expected}") for p in problems), problems


def test_cross_references():
    twice = BASE + '  - {email: b@example.com, unit: "101", roles: [resident], id_tags: ["04A1"]}\n'
    assert refuse(twice) == ["elm.yaml: people[1].id_tags[0] (line 23): id tag 04A1 already belongs to a@example.com"]
    dup = BASE.replace(
        "chargers:\n",
        "chargers:\n  - {id: elm-1, password: other-secret-000001, circuit: supply, connectors: [{id: 1, max_current_a: 16}]}\n",
    )
    assert "elm.yaml: chargers[1].id (line 14): charger 'ELM-1' is listed twice" in refuse(dup)
    loop = BASE.replace(
        "    - {id: cabinet-a, parent: supply,",
        "    - {id: panel-b, parent: cabinet-a, max_current_a: 63}\n    - {id: cabinet-a, parent: panel-b,",
    )
    assert any("the circuits form a loop" in p for p in refuse(loop))


def test_every_problem_is_reported_at_once():
    text = BASE.replace("currency: USD", "currency: usd").replace(
        "{id: 2, max_current_a: 32", "{id: 2, max_current_a: 0"
    )
    assert len(refuse(text)) == 2


# --- files that would exhaust memory or time --------------------------------------------

BILLION_LAUGHS = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["company: *i"]
)


def test_an_alias_bomb_is_refused_quickly_with_a_clear_message():
    import time

    started = time.monotonic()
    with pytest.raises(CommissioningError) as info:
        load(BILLION_LAUGHS, "laughs.yaml")
    assert time.monotonic() - started < 10
    assert str(info.value).startswith("laughs.yaml: (top level) (line 1): the file expands to more than 1,000,000 values")


def test_a_simulator_scenario_alias_bomb_is_refused_too():
    from apps.simulator.scenario import ScenarioError
    from apps.simulator.scenario import load as load_scenario

    with pytest.raises(ScenarioError, match="expands to more than"):
        load_scenario(BILLION_LAUGHS, "laughs.yaml")


def test_aliases_within_reason_still_work():
    maple = (EXAMPLES[0].parent / "maple-court.yaml").read_text()
    # A parking spot label written once and referred to again.
    text = maple.replace("parking_spot: P01}", "parking_spot: &first P01}", 1).replace(
        "parking_spots: [P01]", "parking_spots: [*first]", 1
    )
    assert "*first" in text
    assert load(text, "m.yaml").units[0].parking_spots == ["P01"]


def test_a_file_over_one_mebibyte_is_refused():
    text = (EXAMPLES[0].parent / "maple-court.yaml").read_text() + "#" * (1024 * 1024)
    with pytest.raises(CommissioningError, match=r"the file is 1,0\d\d,\d\d\d bytes; the limit is 1,048,576 bytes"):
        load(text, "huge.yaml")


METER_AT = "  circuits:\n"


def with_meter(meter: str) -> str:
    return BASE.replace(METER_AT, f"  site_meter: {meter}\n{METER_AT}", 1)


def test_modbus_site_meter_options():
    spec = load(with_meter("{id: main, source: modbus, modbus: {host: 10.0.0.5, unit_id: 2, profile: em24, "
                           "interval_s: 1.5, timeout_s: 0.5}}"))
    modbus = spec.electrical.site_meter.modbus
    assert (modbus.host, modbus.port, modbus.unit_id, modbus.profile) == ("10.0.0.5", 502, 2, "em24")
    assert (modbus.interval_s, modbus.timeout_s) == (Decimal("1.5"), Decimal("0.5"))
    default = load(with_meter("{id: main, source: modbus, modbus: {host: meter.lan}}")).electrical.site_meter.modbus
    assert (default.profile, default.interval_s, default.timeout_s) == ("sdm630", Decimal(5), Decimal(2))
    custom = load(with_meter("{id: main, source: modbus, modbus: {host: m, profile: custom, registers: "
                             "{function: holding, type: int32, word_order: little, quantity: power_w, "
                             "addresses: [0x12, 0x14, 0x16], scale: 0.1}}}")).electrical.site_meter.modbus
    assert custom.registers.addresses == [0x12, 0x14, 0x16] and custom.registers.scale == Decimal("0.1")


@pytest.mark.parametrize(("meter", "expected"), [
    ("{id: main, source: modbus, modbus: {host: m, profile: sdm120}}",
     "electrical.site_meter.modbus.profile (line 10): input should be 'sdm630', 'sdm630-power', 'em24', "
     "'em24-power' or 'custom'"),
    ("{id: main, source: modbus, modbus: {host: m, profile: custom}}",
     "electrical.site_meter.modbus (line 10): a custom profile needs registers"),
    ("{id: main, source: modbus, modbus: {host: m, registers: {addresses: [1]}}}",
     "electrical.site_meter.modbus (line 10): registers are for profile: custom"),
    ("{id: main, source: modbus, modbus: {host: m, interval_s: 1, timeout_s: 2}}",
     "electrical.site_meter.modbus (line 10): timeout_s must not be longer than interval_s"),
    ("{id: main, source: modbus, modbus: {host: m, interval_s: 0.1}}",
     "electrical.site_meter.modbus.interval_s (line 10): input should be greater than or equal to 0.2"),
    ("{id: main, source: modbus, modbus: {host: m, profile: custom, registers: {addresses: [1, 2, 3, 4]}}}",
     "electrical.site_meter.modbus.registers.addresses (line 10): list should have at most 3 items"),
])
def test_modbus_refusals_name_the_place(meter, expected):
    found = refuse(with_meter(meter))
    assert any(p.lower().startswith(f"elm.yaml: {expected}".lower()) for p in found), found
