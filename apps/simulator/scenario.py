"""Scenario files: which EVs come to which connector, and when. Pure: no Django, no I/O besides parsing text.

A scenario mixes random arrivals (drawn from a seeded generator, one stream per
connector so that adding a charger does not change the others) with EVs
written out one by one. The format is documented in docs/simulator.md; examples
are in examples/scenarios/. Problems are reported like the commissioning file's,
with the file, the path inside it and the line:

    rush.yaml: evs[1].connector (line 14): charger 'MAPLE-CAB-A' has no connector 9
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.core.yamlfile import FileRefused, Problem, parse, with_lines
from apps.simulator.building_load import LoadCurve, Peak, Step
from apps.simulator.model import ChargerConfig, Ev
from apps.simulator.residents import Habits

Percent = Annotated[int, Field(ge=0, le=100)]


class ScenarioError(FileRefused):
    """The scenario file is refused; ``problems`` says what and where."""


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvModel(Spec):
    """A kind of EV in the fleet random arrivals draw from."""

    name: str = Field(min_length=1, max_length=60)
    battery_kwh: Decimal = Field(gt=0, le=300)
    max_current_a: Decimal = Field(gt=0, le=80, decimal_places=1)
    phases: Literal[1, 3] = 1
    max_dc_power_kw: Decimal = Field(default=Decimal("50"), gt=0, le=400)
    weight: int = Field(default=1, ge=1, le=1000)


class Arrivals(Spec):
    enabled: bool = True
    per_connector_per_day: Decimal = Field(default=Decimal("1.5"), ge=0, le=200)
    plugged_at_start: Decimal = Field(default=Decimal("0.5"), ge=0, le=1)
    stay_minutes: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] = (60, 600)
    soc_start_percent: tuple[Percent, Percent] = (10, 70)

    @field_validator("stay_minutes", "soc_start_percent")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"give [lowest, highest], not {list(value)}")
        return value


class Visit(Spec):
    """One EV written out: it arrives ``arrive_after_min`` minutes after the start."""

    charger: str = Field(min_length=1, max_length=64)
    connector: int = Field(ge=1, le=99)
    arrive_after_min: Decimal = Field(default=Decimal("0"), ge=0)
    stay_min: Decimal = Field(gt=0)
    battery_kwh: Decimal = Field(default=Decimal("60"), gt=0, le=300)
    soc_percent: Percent = 20
    max_current_a: Decimal = Field(default=Decimal("32"), gt=0, le=80, decimal_places=1)
    phases: Literal[1, 3] = 1
    max_dc_power_kw: Decimal = Field(default=Decimal("50"), gt=0, le=400)
    id_tag: str | None = Field(default=None, min_length=1, max_length=20)


DEFAULT_FLEET = (
    EvModel(name="city car", battery_kwh=Decimal("40"), max_current_a=Decimal("16"), phases=1, weight=2),
    EvModel(name="sedan", battery_kwh=Decimal("75"), max_current_a=Decimal("32"), phases=1, weight=2),
    EvModel(name="SUV", battery_kwh=Decimal("95"), max_current_a=Decimal("16"), phases=3, weight=1),
)


Amps3 = tuple[Annotated[Decimal, Field(ge=0, le=5000)], Annotated[Decimal, Field(ge=0, le=5000)],
              Annotated[Decimal, Field(ge=0, le=5000)]]


class PeakSpec(Spec):
    hour: Decimal = Field(ge=0, lt=24)
    width_hours: Decimal = Field(gt=0, le=12)
    amps: Amps3


class StepSpec(Spec):
    name: str = Field(min_length=1, max_length=60)
    phase: Literal[1, 2, 3]
    amps: Decimal = Field(gt=0, le=5000)
    on_minutes: Decimal = Field(gt=0, le=1440)
    per_hour: Decimal = Field(ge=0, le=60)
    hours: tuple[Annotated[int, Field(ge=0, le=24)], Annotated[int, Field(ge=0, le=24)]] = (0, 24)
    at_minutes: tuple[Annotated[Decimal, Field(ge=0)], ...] = ()


class BuildingLoadSpec(Spec):
    """The non-EV load at the site meter (apps/simulator/building_load.py; docs/simulator.md)."""

    base_a: Amps3
    peaks: tuple[PeakSpec, ...] = ()
    steps: tuple[StepSpec, ...] = ()

    def curve(self) -> LoadCurve:
        return LoadCurve(
            base_a=self.base_a,
            peaks=tuple(Peak(p.hour, p.width_hours, p.amps) for p in self.peaks),
            steps=tuple(Step(s.name, s.phase, s.amps, s.on_minutes, s.per_hour, s.hours[0], s.hours[1],
                             s.at_minutes)
                        for s in self.steps),
        )


class ResidentsSpec(Spec):
    """Residents who state their car's needs through the app (apps/simulator/residents.py; docs/simulator.md)."""

    state_needs_percent: Percent = 70
    delay_s: tuple[Annotated[int, Field(ge=0, le=86400)], Annotated[int, Field(ge=0, le=86400)]] = (30, 300)
    rounded_percent: Percent = 50
    target_soc_percent: tuple[Annotated[int, Field(ge=1, le=100)], Annotated[int, Field(ge=1, le=100)]] = (100, 100)

    @field_validator("delay_s", "target_soc_percent")
    @classmethod
    def _range(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"give [lowest, highest], not {list(value)}")
        return value

    def habits(self, state_needs_percent: int | None = None) -> Habits:
        """The habits, with the share of residents who speak overridden when given (--needs-percent)."""
        return Habits(
            state_needs_percent=self.state_needs_percent if state_needs_percent is None else state_needs_percent,
            delay_s=self.delay_s, rounded_percent=self.rounded_percent, target_soc_percent=self.target_soc_percent,
        )


class Scenario(Spec):
    description: str = ""
    seed: int | None = None
    meter_value_interval_s: int = Field(default=60, ge=0, le=3600)
    arrivals: Arrivals = Arrivals()
    fleet: tuple[EvModel, ...] = Field(default=DEFAULT_FLEET, min_length=1)
    evs: tuple[Visit, ...] = ()
    building_load: BuildingLoadSpec | None = None  # None: building_load.DEFAULT_CURVE
    residents: ResidentsSpec = ResidentsSpec()


def load(text: str, source: str = "<scenario>") -> Scenario:
    """Parse and validate a scenario, or raise ScenarioError listing every problem."""
    scenario, _ = parse(
        text, Scenario, source, error=ScenarioError, docs="docs/simulator.md", empty_ok=True,
        mapping_hint="a scenario is a mapping (description, arrivals, fleet, evs)",
    )
    return scenario


@dataclass(frozen=True)
class Plan:
    evs: dict[str, list[Ev]]  # chargePointId -> its EVs
    registers_wh: dict[str, dict[int, int]]  # chargePointId -> connector -> meter register at the start


def check_visits(scenario: Scenario, chargers: list[ChargerConfig], *, source: str = "<scenario>",
                 text: str = "") -> None:
    """Every EV written out names a charger and connector among ``chargers``, or ScenarioError says which not."""
    by_id = {c.charge_point_id.lower(): c for c in chargers}
    problems: list[Problem] = []
    for i, visit in enumerate(scenario.evs):
        charger = by_id.get(visit.charger.lower())
        if charger is None:
            problems.append(Problem(("evs", i, "charger"), f"no charger {visit.charger!r} in this building"))
        elif visit.connector not in {c.connector_id for c in charger.connectors}:
            problems.append(Problem(("evs", i, "connector"),
                                    f"charger {charger.charge_point_id!r} has no connector {visit.connector}"))
    if problems:
        raise ScenarioError(source, with_lines(text, problems) if text else problems)


def plan(scenario: Scenario, chargers: list[ChargerConfig], *, id_tags: list[str], start: datetime,
         horizon: timedelta, seed: int, source: str = "<scenario>", text: str = "") -> Plan:
    """Every EV visit of the run, drawn from ``seed``. Raises ScenarioError for visits that name no connector."""
    by_id = {c.charge_point_id.lower(): c for c in chargers}
    tags = sorted(id_tags) or ["SIM-NO-TAG"]
    evs: dict[str, list[Ev]] = {c.charge_point_id: [] for c in chargers}
    registers: dict[str, dict[int, int]] = {}
    check_visits(scenario, chargers, source=source, text=text)
    for i, visit in enumerate(scenario.evs):
        charger = by_id[visit.charger.lower()]
        arrival = start + timedelta(seconds=int(visit.arrive_after_min * 60))
        battery_wh = int(visit.battery_kwh * 1000)
        rng = random.Random(f"{seed}:visit:{i}")  # noqa: S311 - a reproducible simulation, not a secret
        evs[charger.charge_point_id].append(Ev(
            connector_id=visit.connector, arrival=arrival,
            departure=arrival + timedelta(seconds=max(1, int(visit.stay_min * 60))),
            battery_wh=battery_wh, energy_wh=battery_wh * visit.soc_percent // 100,
            max_current_a=visit.max_current_a, phases=visit.phases, id_tag=visit.id_tag or rng.choice(tags),
            max_dc_power_w=int(visit.max_dc_power_kw * 1000), name=f"evs[{i}]",
        ))
    end = start + horizon
    weights = [m.weight for m in scenario.fleet]
    for charger in chargers:
        registers[charger.charge_point_id] = {}
        for connector in charger.connectors:
            rng = random.Random(f"{seed}:{charger.charge_point_id}:{connector.connector_id}")  # noqa: S311
            registers[charger.charge_point_id][connector.connector_id] = rng.randrange(0, 5_000_000)
            if scenario.arrivals.enabled:
                evs[charger.charge_point_id].extend(
                    _random_visits(scenario, connector.connector_id, rng, weights, tags, start, end))
    return Plan(evs, registers)


def _random_visits(scenario: Scenario, connector_id: int, rng: random.Random, weights: list[int], tags: list[str],
                   start: datetime, end: datetime) -> list[Ev]:
    arrivals = scenario.arrivals
    per_second = float(arrivals.per_connector_per_day) / 86400
    visits: list[Ev] = []
    if rng.random() < float(arrivals.plugged_at_start):
        arrival = start + timedelta(seconds=rng.randrange(0, 120))
    elif per_second > 0:
        arrival = start + timedelta(seconds=int(rng.expovariate(per_second)))
    else:
        return visits
    while arrival < end:
        model = rng.choices(scenario.fleet, weights=weights)[0]
        stay = rng.randint(arrivals.stay_minutes[0] * 60, arrivals.stay_minutes[1] * 60)
        battery_wh = int(model.battery_kwh * 1000)
        soc = rng.randint(*arrivals.soc_start_percent)
        visits.append(Ev(
            connector_id=connector_id, arrival=arrival, departure=arrival + timedelta(seconds=stay),
            battery_wh=battery_wh, energy_wh=battery_wh * soc // 100, max_current_a=model.max_current_a,
            phases=model.phases, id_tag=rng.choice(tags), max_dc_power_w=int(model.max_dc_power_kw * 1000),
            name=model.name,
        ))
        if per_second <= 0:
            break
        # The next driver comes some time after this one left (at least a minute).
        arrival = arrival + timedelta(seconds=stay + 60 + int(rng.expovariate(per_second)))
    return visits
