"""What the simulated residents tell the platform about their cars: the energy they want and when they leave.
Pure: no Django, no I/O, no clock.

Real residents with the app say it some time after they plug in (``PUT /api/v1/sessions/<id>/needs``), and the
balancer weighs each car by it (docs/load-balancing.md, "Weights from demand"). In a closed-loop run a share
of them does (docs/simulator.md, "Residents who state their needs"):

* **who**: each EV visit's resident is drawn from the seed, one random stream per visit (its charger,
  connector and rank among that connector's visits), so a visit's resident says the same whatever the other
  chargers, and whenever the run starts. Every value is drawn whether the resident speaks or not, so the
  share decides only who speaks: the residents who speak at 70 % say the same words at 100 %.
* **what**: the energy their car needs from this session to reach their target charge (full by default), and
  when they leave. Some read the app's figure and give it as it is (Wh; the departure to the minute), the
  others round it as people do (to the kWh; the departure to the nearest quarter hour).
* **when**: ``delay_s`` simulated seconds after their session started (they plug in, then open the app).

A resident whose car needs nothing, or who leaves within ``MIN_NOTICE`` of speaking, says nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apps.simulator.model import Ev, epoch

QUARTER_HOUR_S = 900
MAX_ENERGY_WH = 200_000  # the most the endpoint takes from one session
MIN_NOTICE = timedelta(minutes=15)  # leaving sooner than this after opening the app, nobody bothers


@dataclass(frozen=True)
class Habits:
    """How the building's residents use the app (the scenario's ``residents`` section)."""

    state_needs_percent: int = 70  # share of the EVs whose resident states its needs
    delay_s: tuple[int, int] = (30, 300)  # simulated seconds after the session started, lowest and highest
    rounded_percent: int = 50  # share of those who round (kWh, quarter hour); the others are exact
    target_soc_percent: tuple[int, int] = (100, 100)  # the charge they want, lowest and highest

    def __post_init__(self) -> None:
        for name in ("state_needs_percent", "rounded_percent"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name} is a percentage in 0-100")
        low, high = self.delay_s
        if not 0 <= low <= high:
            raise ValueError("delay_s must be (lowest, highest) with 0 <= lowest <= highest")
        low, high = self.target_soc_percent
        if not 1 <= low <= high <= 100:
            raise ValueError("target_soc_percent must be (lowest, highest) within 1-100")


@dataclass(frozen=True)
class Needs:
    """What one resident says, ``delay_s`` simulated seconds after their session started."""

    delay_s: int
    energy_wh: int  # wanted from this session in total
    ready_by: datetime  # on the simulated clock
    rounded: bool


def needs_of(ev: Ev, visit: str, *, seed: int, habits: Habits) -> Needs | None:
    """What the resident of this EV visit says, or None when they say nothing. ``visit`` names the visit
    (``Residents`` gives "<chargePointId>#<connector>/<rank>") and seeds its stream with ``seed``."""
    rng = random.Random(f"{seed}:needs:{visit}")  # noqa: S311 - a reproducible simulation, not a secret
    # Always the same draws in the same order: the share changes who speaks, never what anyone says.
    speaks = rng.randrange(100) < habits.state_needs_percent
    delay_s = rng.randint(*habits.delay_s)
    rounded = rng.randrange(100) < habits.rounded_percent
    target = rng.randint(*habits.target_soc_percent)
    wanted = ev.battery_wh * target // 100 - ev.energy_wh
    if not speaks or wanted <= 0:
        return None
    departure = epoch(ev.departure)
    if rounded:
        energy = max(1000, (wanted + 500) // 1000 * 1000)
        ready = (departure + QUARTER_HOUR_S // 2) // QUARTER_HOUR_S * QUARTER_HOUR_S
    else:
        energy = wanted
        ready = departure // 60 * 60
    ready_by = datetime.fromtimestamp(ready, UTC)
    if ready_by < ev.arrival + timedelta(seconds=delay_s) + MIN_NOTICE:
        return None
    return Needs(delay_s, min(energy, MAX_ENERGY_WH), ready_by, rounded)


@dataclass(frozen=True)
class OpenSession:
    """A transaction running on a simulated connector, as the simulation knows it."""

    charge_point_id: str
    ev: Ev
    started: datetime  # simulated: the StartTransaction's time
    transaction_id: int

    @property
    def gun(self) -> str:
        return f"{self.charge_point_id}#{self.ev.connector_id}"


@dataclass(frozen=True)
class Statement:
    session: OpenSession
    needs: Needs

    @property
    def at(self) -> datetime:
        return self.session.started + timedelta(seconds=self.needs.delay_s)


class Residents:
    """Who says what and when over a run of the planned ``evs`` (chargePointId -> its EVs): each resident at
    most once per session, ``delay_s`` after it started."""

    def __init__(self, evs: Mapping[str, Iterable[Ev]], *, seed: int, habits: Habits):
        self.habits = habits
        self._needs: dict[tuple[str, Ev], Needs | None] = {}
        for charge_point_id, visits in evs.items():
            ranks: dict[int, int] = {}
            for ev in sorted(visits, key=lambda e: (e.arrival, e.connector_id)):
                rank = ranks[ev.connector_id] = ranks.get(ev.connector_id, -1) + 1
                self._needs[(charge_point_id, ev)] = needs_of(
                    ev, f"{charge_point_id}#{ev.connector_id}/{rank}", seed=seed, habits=habits)
        self._done: set[tuple[str, int]] = set()

    def needs(self, ev: Ev, charge_point_id: str) -> Needs | None:
        """What the resident of a planned visit says (None: nothing, or a visit not in the plan)."""
        return self._needs.get((charge_point_id, ev))

    @property
    def speaking(self) -> int:
        """How many of the planned visits' residents will state their needs (if their session starts)."""
        return sum(1 for needs in self._needs.values() if needs is not None)

    def due(self, sessions: Iterable[OpenSession], now: datetime) -> list[Statement]:
        """The statements to make at ``now`` (simulated), each handed out once; a resident whose departure has
        come by the time their session is known says nothing."""
        out = []
        for session in sessions:
            key = (session.charge_point_id, session.transaction_id)
            if key in self._done:
                continue
            needs = self.needs(session.ev, session.charge_point_id)
            if needs is None or needs.ready_by <= now:
                self._done.add(key)
                continue
            statement = Statement(session, needs)
            if statement.at <= now:
                self._done.add(key)
                out.append(statement)
        return out
