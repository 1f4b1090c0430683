"""The capacity report end to end: a building's history made through the real services (readings stored by
apps.electrical.services and rolled up by the real roll-up, a session with its meter values stored by
apps.charging.services), then ``manage.py capacity_report`` as text and JSON, and the managers' page.

Elm Yard is commissioned for this module alone (its history is committed once and read by every test):
a 125 A supply derated 0.8 (100 A usable per phase), 230 V, the meter every 5 minutes (stale after 150 s,
so a quarter needs 3 readings). Other load: a flat 40 A per phase. On Tuesday 2026-01-06 from 20:00 to
22:00 an EV charged at 32 A on L2 (connector 2, wired to L2): the meter saw 72 A there. An hour of readings
is missing in the night of Thursday the 8th, and one quarter on Friday the 9th has a single reading.

By hand: 60 A of headroom per phase for 13 h at 230 V is 179,400 Wh a phase: 8 EVs of 20 kWh on each, 24.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from apps.charging import services as charging
from apps.charging.models import ChargePoint
from apps.commissioning.services import commission_text
from apps.core import capacity as core_capacity
from apps.core.tenants import in_public_schema, in_schema
from apps.electrical import latest, readings
from apps.electrical import services as electrical
from apps.electrical.models import SiteMeter, SiteMeterQuarter
from apps.ocpp.parsing import meter_value_rows
from apps.tenancy.models import Condominium
from tests import factories

LA = ZoneInfo("America/Los_Angeles")
HOST = "elm-yard.localhost"
START = datetime(2026, 1, 5, tzinfo=LA)  # a Monday
NOW = datetime(2026, 1, 13, 0, 7, tzinfo=LA)  # 8 days of history before the quarter under way
EV_FROM, EV_TO = datetime(2026, 1, 6, 20, 0, tzinfo=LA), datetime(2026, 1, 6, 22, 0, tzinfo=LA)
GAP = datetime(2026, 1, 8, 2, 0, tzinfo=LA)  # an hour without readings, in the night of the 7th to the 8th
STALE = datetime(2026, 1, 9, 12, 0, tzinfo=LA)  # one reading only in this quarter

ELM_YARD = """
company: {slug: acme, name: Acme Property Management}
condominium:
  slug: elm-yard
  name: Elm Yard
  domains: [elm-yard.localhost]
  timezone: America/Los_Angeles
  currency: USD
electrical:
  supply: {voltage_v: 230, phases: 3, max_current_a: 125, derate: 0.8, margin_a: 0}
  site_meter: {id: elm-main, source: api, token: "elm-meter-token-0001", stale_after_s: 150}
  circuits:
    - {id: garage, parent: supply, max_current_a: 63}
chargers:
  - id: TEST-ELM-1
    password: "%(charger_password)s"
    circuit: garage
    connectors:
      - {id: 1, max_current_a: 32, phases: 1, phase_rotation: L1, parking_spot: E01}
      - {id: 2, max_current_a: 32, phases: 1, phase_rotation: L2, parking_spot: E02}
units:
  - {number: "1", parking_spots: [E01, E02]}
people:
  - {email: board@elm.test, name: Board, roles: [board]}
  - {email: rita@elm.test, name: Rita, unit: "1", roles: [resident], id_tags: ["0E1E1E1E"]}
"""


def _readings() -> list[readings.Reading]:
    made = []
    at = START
    while at < NOW.replace(minute=0):
        local = at.astimezone(LA)
        skip = (GAP <= local < GAP + timedelta(hours=1)) or (STALE <= local < STALE + timedelta(minutes=15)
                                                              and local != STALE)
        if not skip:
            l2 = "72" if EV_FROM <= local < EV_TO else "40"
            made.append(readings.Reading(at.astimezone(UTC), (Decimal(40), Decimal(l2), Decimal(40))))
        at = (at.astimezone(UTC) + timedelta(minutes=5)).astimezone(LA)
    return made


def _ev_session() -> None:
    cp = ChargePoint.objects.get(charge_point_id="TEST-ELM-1")
    started = charging.session_start(charge_point_pk=cp.pk, connector_number=2, id_tag="0E1E1E1E", meter_start=0,
                                     timestamp=EV_FROM, received_at=EV_FROM + timedelta(seconds=1))
    for n in range(1, 8):  # every quarter hour: the register (1840 Wh a quarter at 32 A) and the current
        at = EV_FROM + timedelta(minutes=15 * n)
        payload = [{"timestamp": at.astimezone(UTC).isoformat(), "sampled_value": [
            {"measurand": "Energy.Active.Import.Register", "value": str(1840 * n), "unit": "Wh"},
            {"measurand": "Current.Import", "value": "32.0", "unit": "A", "phase": "L1"}]}]
        rows = meter_value_rows(payload, connector_number=2, transaction_id=started.transaction_id, received_at=at)
        charging.meter_values_store(cp.pk, [{**row, "session_id": started.session_pk} for row in rows])
    charging.session_stop(charge_point_pk=cp.pk, charge_point_id=cp.charge_point_id,
                          transaction_id=started.transaction_id, meter_stop=14_720, timestamp=EV_TO,
                          received_at=EV_TO + timedelta(seconds=1))


@pytest.fixture(scope="module")
def elm(world, django_db_blocker) -> Iterator[Condominium]:
    with django_db_blocker.unblock():
        with in_public_schema():
            commission_text(ELM_YARD % {"charger_password": factories.CHARGER_PASSWORD}, source="elm-yard.yaml",
                            invite=False)
            condo = Condominium.objects.get(slug="elm-yard")
        with in_schema(condo.schema_name):
            meter = SiteMeter.objects.select_related("circuit").get(key="elm-main")
            batch = _readings()
            for first in range(0, len(batch), 500):
                electrical.site_readings_store(meter=meter, checked=readings.Checked(tuple(batch[first:first + 500])),
                                               received_at=NOW.astimezone(UTC), building_schema=condo.schema_name)
            electrical.site_readings_roll_up_and_purge(now=NOW.astimezone(UTC), retention_days=14)
            _ev_session()
        # Commissioned people have no password until they choose one: as demo_logins does.
        factories.person(condo, "board@elm.test", roles=("board",))
        factories.person(condo, "rita@elm.test", roles=("resident",), unit="1")
    yield condo
    # Gone again, so that tests walking every building (stale meters, roll-ups) see the session's three.
    latest.forget(condo.schema_name)
    with django_db_blocker.unblock(), in_public_schema():
        Condominium.objects.get(pk=condo.pk).delete(force_drop=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command("capacity_report", *args, stdout=out)
    return out.getvalue()


def report_at(condo, now=NOW, **asked):
    with in_schema(condo.schema_name):
        return core_capacity.building_capacity_report(
            zone_name=condo.timezone, request=core_capacity.CapacityRequest(**{"days": 8, **asked}), now=now)


def test_the_history_is_what_the_real_roll_up_made(elm, committed):
    with in_schema(elm.schema_name):
        quarters = SiteMeterQuarter.objects.filter(meter__key="elm-main")
        assert quarters.count() == 8 * 96 - 4
        evening = quarters.get(period_start=EV_FROM)
        assert (evening.samples, evening.peak_l2_a, evening.mean_l2_a) == (3, Decimal(72), Decimal(72))
        assert quarters.get(period_start=STALE).samples == 1


def test_the_report_separates_the_ev_and_counts_what_is_missing(elm, committed):
    report = report_at(elm)
    c = report.coverage
    assert (c.expected, c.present, c.missing, c.stale, c.trusted) == (768, 764, 4, 1, 763)
    assert c.days == Decimal("7.9") and c.ev_quarters == 8
    assert report.usable_a == (Decimal(100),) * 3
    tuesday_20 = next(cell for cell in report.cells if (cell.weekday, cell.hour) == (1, 20))
    assert tuesday_20.total_p95_a == (Decimal(40), Decimal(72), Decimal(40))
    assert tuesday_20.non_ev_p95_a == (Decimal(40),) * 3  # 72 A measured - 32 A the EV drew
    assert [n.evs for n in report.nights] == [24] * 7  # the nights of the 5th to the 11th
    gap_night = next(n for n in report.nights if n.date.day == 7)
    assert (gap_night.quarters, gap_night.known) == (52, 48)
    assert report.upgrade.target_evs == 2 and not report.upgrade.needed  # two parking spots with connectors
    assert report.throttling.note == "no balancer history yet"
    # The EVs planned are the building's connectors: single-phase, 6-32 A.
    assert (report.params.ev.phases, report.params.ev.min_a, report.params.ev.max_a) == (1, 6, 32)


def test_a_fixed_number_of_queries_however_long_the_history(elm, committed):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def reads(**asked) -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            report_at(elm, **asked)
        return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith("SET search_path")]

    # The meter, the circuits, the quarter hours, the sessions, their registers and currents, the connectors.
    eight_days = reads()
    assert len(eight_days) == 8, eight_days
    assert len(reads(days=30)) == 8


def test_the_command_text_and_json_for_the_history(elm, committed, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW.astimezone(UTC))
    text = run("elm-yard", "--days", "8", "--evs", "30")
    assert "Capacity report: Elm Yard (elm-yard)" in text
    assert "Based on 763 quarter hours (7.9 days)" in text and "4 missing, 1 stale" in text
    assert "worst night 24, median night 24" in text
    # 30 EVs: 10 a phase need 200,000 Wh. The night of the 7th lacks an hour that no other Thursday fills (the
    # only one in the history): no headroom is assumed there. 48 quarters at 60 + x A and 4 at x A give
    # 230 / 4 x (48 x (60 + x) + 4 x) >= 200,000: x >= 11.8, so 12 A more, a 140 A supply (112 / 0.8).
    assert "for 30: 30 EVs need 12 A more on every phase: a supply rated 140 / 140 / 140 A" in text
    assert "Throttling: no balancer history yet." in text
    # 63 A for 13 h: 188,370 Wh a phase, 9 EVs of 20 kWh on each.
    assert "circuit garage: usable 63.0 / 63.0 / 63.0 A; 2 connectors, alone it could serve 27 EVs" in text
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("hour  load L1"))
    assert len({len(line) for line in lines[first:first + 26]}) == 1
    assert lines[first + 2 + 20].split() == ["20", "40.0", "40.0", "40.0", "60.0", "60.0", "60.0"]

    data = json.loads(run("elm-yard", "--days", "8", "--format", "json", "--kwh", "22.5", "--ready-by", "06:00"))
    assert data["building"] == "elm-yard" and data["timezone"] == "America/Los_Angeles"
    assert data["coverage"]["trusted"] == 763 and data["coverage"]["missing"] == 4
    assert data["parameters"] == {"energy_wh": 22_500, "ev_phases": 1, "min_a": "6.0", "max_a": "32.0",
                                  "night_start": "18:00", "ready_by": "06:00", "target_evs": 2, "growth": "0",
                                  "percentile": 95}
    # 12 h of 60 A: 165,600 Wh a phase, 7 EVs of 22.5 kWh; the night without an hour of readings has 11 h:
    # 151,800 Wh, 6 EVs a phase.
    assert (data["evs"]["worst_night"], data["evs"]["median_night"]) == (18, 21)
    assert data["evs"]["lowest_nights"][0]["date"] == "2026-01-07"
    tuesday = next(c for c in data["peak_load"] if (c["weekday"], c["hour"]) == ("Tue", 20))
    assert tuesday["total_max_a"] == {"L1": "40.0", "L2": "72.0", "L3": "40.0"}
    assert tuesday["non_ev_max_a"]["L2"] == "40.0"
    assert data["circuits"][1] == {"key": "garage", "is_supply": False, "max_power_w": None, "connectors": 2,
                                   "usable_a": {"L1": "63.0", "L2": "63.0", "L3": "63.0"}}
    # The garage's 63 A alone for 12 h: 173,880 Wh a phase, 7 EVs of 22.5 kWh on each.
    assert data["circuit_capacity"] == [{"key": "garage", "connectors": 2, "evs_alone": 21}]
    assert data["throttling"]["note"] == "no balancer history yet"


def test_the_command_refuses_clearly(elm, committed, monkeypatch):
    with pytest.raises(CommandError, match="no building 'nowhere'"):
        run("nowhere")
    with pytest.raises(CommandError, match="oak-tower: this building has no site meter"):
        run("oak-tower")
    monkeypatch.setattr(timezone, "now", lambda: datetime(2026, 1, 9, 12, tzinfo=UTC))  # 4 days in
    with pytest.raises(CommandError, match=r"elm-yard: too little history: .* \(4\.1 days;.*at least 7 days"):
        run("elm-yard", "--days", "8")
    with pytest.raises(CommandError, match="days: 3; between 7 and 3650"):
        run("elm-yard", "--days", "3")
    with pytest.raises(CommandError, match="growth: 300 %; between 0 and 200 %"):
        run("elm-yard", "--growth", "300")
    with pytest.raises(CommandError, match="ready-by"):
        run("elm-yard", "--ready-by", "7am")


def get(user, query: str = "", host: str = HOST):
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client.get(f"/capacity/{query}")


def test_the_page_with_its_charts_for_managers_and_board(elm, world, committed, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW.astimezone(UTC))
    board = factories.person(elm, "board@elm.test", roles=("board",))
    for allowed in (world.acme_manager, board):
        response = get(allowed, "?days=8&kwh=20&ready_by=07:00&evs=30")
        assert response.status_code == 200
        page = response.content.decode()
        assert page.count("<svg") == 2 and 'class="load"' in page and 'class="limit"' in page
        assert page.count('class="night"') == 7 and 'class="target"' in page
        assert "24 on the worst night" in page and "12 A more on every phase" in page
        assert "no balancer history yet" in page
        assert "from 2026-01-05 00:00 to 2026-01-13 00:00" in page  # the building's time, not UTC
        assert '<tr><td>garage</td><td>63.0 / 63.0 / 63.0</td><td>—</td><td>2</td><td>27</td></tr>' in page
    # A form that cannot be read says so and falls back to the defaults.
    page = get(world.acme_manager, "?days=two").content.decode()
    assert "days: &#x27;two&#x27; is not understood" in page
    assert "days: 400; at most 366 here" in get(world.acme_manager, "?days=400").content.decode()
    # The link from the building's page, for managers and the board only.
    home = Client(HTTP_HOST=HOST)
    home.force_login(world.acme_manager)
    assert 'id="capacity-link"' in home.get("/").content.decode()


def test_residents_and_other_buildings_get_nothing(elm, world, committed, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW.astimezone(UTC))
    rita = factories.person(elm, "rita@elm.test", roles=("resident",), unit="1")
    oak_board = factories.board_member(world.oak, f"board-{uuid.uuid4().hex[:6]}@oak.test")
    for stranger in (rita, world.harbor_manager, world.maple_board, world.maple_resident, oak_board):
        response = get(stranger, "?days=8")
        assert response.status_code == 404
        assert b"<svg" not in response.content and b"worst night" not in response.content
    home = Client(HTTP_HOST=HOST)
    home.force_login(rita)
    assert 'id="capacity-link"' not in home.get("/").content.decode()
    anonymous = get(None)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    # Harbor's manager on Harbor View's own host: its own page (no meter there), never Elm Yard's figures.
    own = get(world.harbor_manager, "?days=8", host="harbor-view.localhost")
    assert own.status_code == 200 and b"Elm Yard" not in own.content
