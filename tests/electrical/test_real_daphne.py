"""The HTTP push end to end: a real daphne process (as the Procfile runs it), the building's host name,
the test database and Redis shared with this process."""

from __future__ import annotations

import http.client
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.core.tenants import in_schema
from apps.electrical import latest
from apps.electrical.models import SiteMeterReading
from tests import factories
from tests.electrical.conftest import HARBOR, MAPLE
from tests.helpers import iso
from tests.servers import daphne_running


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    with daphne_running(tmp_path_factory) as server:
        yield server


@pytest.fixture
def committed_meters(world, committed):
    maple = factories.site_meter(world.maple, {"id": "maple-e2e", "source": "api", "token": "maple-e2e-token"})
    harbor = factories.site_meter(world.harbor_view, {"id": "harbor-e2e", "source": "api",
                                                      "token": "harbor-e2e-token"})
    for condo in (world.maple, world.harbor_view):
        latest.forget(condo.schema_name)
    yield maple, harbor
    factories.site_meter_retire(world.maple, "maple-e2e")
    factories.site_meter_retire(world.harbor_view, "harbor-e2e")
    for condo in (world.maple, world.harbor_view):
        latest.forget(condo.schema_name)


def post(daphne, host, meter_key, token, data) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", daphne.port, timeout=10)
    body = json.dumps(data).encode()
    conn.request("POST", f"/api/v1/site-meters/{meter_key}/readings", body=body,
                 headers={"Host": host, "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    response = conn.getresponse()
    status, payload = response.status, json.loads(response.read() or b"{}")
    conn.close()
    return status, payload


def test_push_through_daphne_is_stored_held_and_fenced_per_building(daphne, world, committed_meters):
    now = timezone.now().replace(microsecond=0)
    batch = {"readings": [{"timestamp": iso(now - timedelta(seconds=10 - i)), "current_a": [40 + i, 38, 44.9]}
                          for i in range(5)]}
    assert post(daphne, MAPLE, "maple-e2e", "maple-e2e-token", batch) == (202, {"accepted": 5})
    assert post(daphne, MAPLE, "maple-e2e", "maple-e2e-token", batch) == (202, {"accepted": 5, "already_stored": 5})
    with in_schema(world.maple.schema_name):
        assert SiteMeterReading.objects.filter(meter__key="maple-e2e").count() == 5
    held = latest.site_load_latest(world.maple.schema_name)
    assert held.meter_key == "maple-e2e" and held.reading.currents_a == (Decimal(44), Decimal(38), Decimal("44.9"))

    status, answer = post(daphne, MAPLE, "maple-e2e", "maple-e2e-token",
                          {"readings": [{"timestamp": iso(now), "current_a": [1, "x", 1]}]})
    assert status == 400 and answer["problems"][0]["text"] == "readings[0].current_a[1]: must be a number"

    # Harbor View's meter and token on Maple Court's host, and Maple's on Harbor's: nothing.
    assert post(daphne, MAPLE, "harbor-e2e", "harbor-e2e-token", batch) == (401, {"error": "unauthorized"})
    assert post(daphne, HARBOR, "maple-e2e", "maple-e2e-token", batch) == (401, {"error": "unauthorized"})
    with in_schema(world.harbor_view.schema_name):
        assert not SiteMeterReading.objects.filter(meter__key="harbor-e2e").exists()
    assert latest.site_load_latest(world.harbor_view.schema_name) is None
    assert "Traceback" not in daphne.read_log()
