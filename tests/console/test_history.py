"""The console's chart of the last hours: the pure columns (apps/console/history.py), then the page's JSON from the
building's own readings and balancing runs, refused to everyone but its managers and board."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.console import history
from apps.core.tenants import in_schema
from apps.electrical.models import SiteMeterReading
from apps.loadbalancing.models import BalancingRun
from tests import factories

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
M = timedelta(minutes=1)
D = Decimal


def node(capacity=("100", "100", "90"), non_ev=("20", "30", "10"), unmanaged=("0", "2", "0")) -> dict:
    return {"capacity_a": list(capacity), "non_ev_a": list(non_ev), "unmanaged_a": list(unmanaged),
            "planned_a": ["0", "0", "0"]}


def test_each_minute_shows_the_most_loaded_phase_split_into_evs_and_the_rest_against_its_limit():
    meter = [history.MeterMinute(T0, (D("40.04"), D("62.0"), D("15"))),
             history.MeterMinute(T0 + M, (D("70"), D("50"), None))]
    runs = [history.RunMinute(T0 - 10 * M, node())]  # a run before the window is in force when it opens
    chart = history.minutes(meter, runs, start=T0, end=T0 + 3 * M)
    assert chart["t"] == [int(T0.timestamp()) + 60 * i for i in range(3)]
    # Minute 0: L2 is the most loaded (62 A); the rest of the building there is 30 + 2 unmanaged; limit L2's 100.
    assert [chart[k][0] for k in ("building_a", "ev_a", "other_a", "limit_a")] == ["62.0", "30.0", "32.0", "100.0"]
    # Minute 1: L1 now (70 A), with L1's other load and limit.
    assert [chart[k][1] for k in ("building_a", "ev_a", "other_a", "limit_a")] == ["70.0", "50.0", "20.0", "100.0"]
    # Minute 2: no reading is a gap, not a zero; the run still holds (other load and limit on its worst phase).
    assert (chart["building_a"][2], chart["ev_a"][2]) == (None, None)
    assert (chart["other_a"][2], chart["limit_a"][2]) == ("32.0", "100.0")


def test_a_newer_run_takes_over_from_its_minute_and_evs_never_go_below_zero():
    meter = [history.MeterMinute(T0 + i * M, (D("25"), D("0"), D("0"))) for i in range(3)]
    runs = [history.RunMinute(T0, node(non_ev=("20", "0", "0"), unmanaged=("0", "0", "0"))),
            history.RunMinute(T0 + 2 * M, node(capacity=("80", "80", "80"), non_ev=("30", "0", "0"),
                                              unmanaged=("0", "0", "0")))]
    chart = history.minutes(meter, runs, start=T0, end=T0 + 3 * M)
    assert chart["ev_a"] == ["5.0", "5.0", "0.0"] and chart["limit_a"] == ["100.0", "100.0", "80.0"]


def test_without_runs_or_readings_every_value_is_unknown():
    chart = history.minutes([], [], start=T0, end=T0 + 2 * M)
    assert len(chart["t"]) == 2 and all(v is None for k in ("building_a", "ev_a", "other_a", "limit_a")
                                        for v in chart[k])
    broken = history.minutes([], [history.RunMinute(T0, {"capacity_a": ["x", "1", "2"]})], start=T0, end=T0 + M)
    assert broken["limit_a"] == [None]  # a record that does not read as amperes is not drawn


def client_of(user, host: str = "maple-court.localhost") -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_the_chart_of_the_buildings_own_readings_and_runs(world):
    meter = factories.site_meter(world.maple, {"id": "main-chart", "source": "api", "token": "t" * 32,
                                               "stale_after_s": 15})
    now = timezone.now().replace(second=30, microsecond=0)
    with in_schema(world.maple.schema_name):
        # Two readings in one minute: the minute shows its peak.
        for minutes_ago, second, amps in ((5, 5, "41.5"), (5, 20, "43.0"), (3, 10, "60.2")):
            at = (now - minutes_ago * M).replace(second=second)
            SiteMeterReading.objects.create(meter=meter, sampled_at=at,
                                            received_at=now, current_l1_a=D(amps), current_l2_a=D("1"),
                                            current_l3_a=D("1"))
        BalancingRun.objects.create(started_at=now - 4 * M, trigger="test", duration_us=1, allocate_us=1,
                                    nodes={"supply": node(capacity=("155", "155", "155"), non_ev=("12", "1", "1"),
                                                          unmanaged=("0", "0", "0"))})
    manager = client_of(world.acme_manager)
    manager.get("/console/chart.json?hours=1")  # warm: sessions, content types
    with CaptureQueriesContext(connection) as captured:
        answer = manager.get("/console/chart.json?hours=1")
    assert answer.status_code == 200 and len(captured.captured_queries) <= 12
    data = answer.json()
    assert data["node"] == "supply" and len(data["t"]) == 60
    seen = dict(zip(data["t"], zip(data["building_a"], data["ev_a"], data["limit_a"], strict=True), strict=True))
    minute = lambda ago: int((now - ago * M).replace(second=0).timestamp())  # noqa: E731
    assert seen[minute(5)] == ("43.0", None, None)  # before the first run: the load alone
    assert seen[minute(3)] == ("60.2", "48.2", "155.0")  # 60.2 - 12 on L1
    assert seen[minute(1)][0] is None and seen[minute(1)][2] == "155.0"
    assert manager.get("/console/chart.json?hours=5").status_code == 400
    assert "hours" in manager.get("/console/chart.json?hours=x").json()["error"]
    assert client_of(world.maple_board).get("/console/chart.json").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["maple_resident", "oak_resident", "harbor_manager"])
def test_residents_and_people_of_other_buildings_get_no_chart(world, who):
    assert client_of(getattr(world, who)).get("/console/chart.json").status_code == 404
