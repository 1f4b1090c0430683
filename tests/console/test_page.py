"""The building console page: managers and board members of the building see it; nobody else learns it exists;
its queries do not grow with the building."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.buildings.models import Resident
from apps.charging.models import ChargingSession, Connector
from apps.core.tenants import in_schema
from apps.loadbalancing.models import BalancingRun
from apps.ocpp.live import _sync, key
from tests import factories

HOST = "maple-court.localhost"


def client_of(user, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client


def a_charger(world, **kwargs) -> str:
    charge_point_id = f"CON-{uuid.uuid4().hex[:8].upper()}"
    factories.charger(world.maple, charge_point_id, **kwargs)
    return charge_point_id


@pytest.mark.django_db
def test_managers_see_each_connectors_state_limit_reason_and_resident(world):
    cp_id = a_charger(world)
    with in_schema(world.maple.schema_name):
        connector = Connector.objects.get(charge_point__charge_point_id=cp_id, connector_id=1)
        resident = Resident.objects.get(user=world.maple_resident)
        ChargingSession.objects.create(charge_point=connector.charge_point, connector=connector, connector_number=1,
                                       transaction_id=900_000 + connector.pk, id_tag="04A1B2C3D4", resident=resident,
                                       started_at=timezone.now(), meter_start_wh=1000)
        run = BalancingRun.objects.create(
            started_at=timezone.now(), trigger="test", duration_us=1, allocate_us=1,
            limits={f"{cp_id}#1": {"a": "13.7", "w": None, "why": "node-current",
                                   "sentence": "The supply's L1 is shared by every car on it."}},
            nodes={"supply": {"capacity_a": ["155.0", "155.0", "155.0"], "non_ev_a": ["98.5", "0", "0"],
                              "unmanaged_a": ["0", "0", "0"], "planned_a": ["13.7", "0", "0"]}})
    _sync().hset(key(cp_id), mapping={"connected": "1", "schema": world.maple.schema_name, "status:1": "Charging",
                                      "current_a:1:L1": "13.6", "session_energy_wh:1": "4321",
                                      "transaction_id:1": str(900_000 + connector.pk)})
    try:
        page = client_of(world.acme_manager).get("/console/")
    finally:
        _sync().delete(key(cp_id))
    assert page.status_code == 200
    html = page.content.decode()
    row = html[html.index(f'data-connector="{cp_id}#1"'):]
    row = row[:row.index("</tr>")]
    for shown in ("Charging", "13.6", "13.7 A", "The supply&#x27;s L1 is shared by every car on it.", "Alice", "101",
                  "4.32 kWh", "online"):
        assert shown in row, shown
    # The supply's L1: 98.5 A of other load + what the chargers draw now.
    supply = html[html.index('data-node="supply"'):]
    assert 'data-f="other_a" data-empty="?">98.5<' in supply[:supply.index("</tr>")]
    assert "/static/js/console.js" in html
    # The run's time in the building's own time zone (Maple Court: America/Los_Angeles), not the server's.
    local = run.started_at.astimezone(ZoneInfo(world.maple.timezone)).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<span id="run-at">{local}</span>' in html


@pytest.mark.django_db
def test_board_members_see_it_and_the_home_page_links_to_it(world):
    assert client_of(world.maple_board).get("/console/").status_code == 200
    assert 'href="/console/"' in client_of(world.acme_manager).get("/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["maple_resident", "harbor_manager", "oak_resident", "harbor_resident"])
def test_residents_and_people_of_other_buildings_get_nothing(world, who):
    answer = client_of(getattr(world, who)).get("/console/")
    assert answer.status_code == 404
    assert b"TEST-MAPLE-1" not in answer.content


@pytest.mark.django_db
def test_the_other_companys_manager_sees_only_their_own_building(world):
    own = client_of(world.harbor_manager, "harbor-view.localhost").get("/console/")
    assert own.status_code == 200
    assert b"TEST-HARBOR-1" in own.content and b"TEST-MAPLE-1" not in own.content


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(world):
    answer = client_of(None).get("/console/")
    assert answer.status_code == 302 and "/login" in answer["Location"]


@pytest.mark.django_db
def test_the_number_of_queries_does_not_grow_with_the_building(world):
    client = client_of(world.acme_manager)
    client.get("/console/")  # warm: sessions, content types

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/console/").status_code == 200
        return len(captured.captured_queries)

    before = queries()
    for _ in range(6):
        cp_id = a_charger(world, connectors=2)
        with in_schema(world.maple.schema_name):
            connector = Connector.objects.get(charge_point__charge_point_id=cp_id, connector_id=2)
            ChargingSession.objects.create(charge_point=connector.charge_point, connector=connector,
                                           connector_number=2, transaction_id=800_000 + connector.pk,
                                           started_at=timezone.now())
    assert queries() == before
    assert before <= 12
