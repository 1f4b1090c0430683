"""The portfolio on the company's site: each manager sees the buildings of their own companies, with their figures,
and nobody else sees it at all; its queries grow with the buildings, not with their chargers."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise
from apps.billing.models import SessionCharge
from apps.charging.models import ChargingSession, Connector
from apps.core.tenants import in_schema
from apps.electrical import latest
from apps.electrical.readings import Reading
from apps.ocpp.live import _sync, key
from apps.statements import periods
from tests import factories

PUBLIC = "localhost"


def page_of(user) -> tuple[int, str]:
    client = Client(HTTP_HOST=PUBLIC)
    if user is not None:
        client.force_login(user)
    answer = client.get("/portfolio/")
    return answer.status_code, answer.content.decode()


def row_of(html: str, slug: str) -> str:
    start = html.index(f'data-building="{slug}"')
    return html[start:html.index("</tr>", start)]


@pytest.mark.django_db
def test_each_manager_sees_the_buildings_of_their_companies_only(world):
    status, html = page_of(world.acme_manager)
    assert status == 200
    assert 'data-building="maple-court"' in html and 'data-building="oak-tower"' in html
    assert "harbor-view" not in html and "Harbor View" not in html
    status, html = page_of(world.harbor_manager)
    assert status == 200 and 'data-building="harbor-view"' in html
    assert "maple-court" not in html and "Oak Tower" not in html


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["maple_board", "maple_resident", "harbor_resident"])
def test_board_members_and_residents_get_nothing(world, who):
    status, html = page_of(getattr(world, who))
    assert status == 404 and "Maple Court" not in html


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_log_in(world):
    client = Client(HTTP_HOST=PUBLIC)
    answer = client.get("/portfolio/")
    assert answer.status_code == 302 and "/login" in answer["Location"]


@pytest.mark.django_db
def test_a_buildings_figures(world):
    schema = world.maple.schema_name
    cp_id = f"PF-{uuid.uuid4().hex[:8].upper()}"
    factories.charger(world.maple, cp_id)
    now = timezone.now()
    with in_schema(schema):
        before = _figures_row(world)
        connector = Connector.objects.get(charge_point__charge_point_id=cp_id, connector_id=1)
        ChargingSession.objects.create(charge_point=connector.charge_point, connector=connector, connector_number=1,
                                       transaction_id=700_000 + connector.pk, started_at=now)
        done = ChargingSession.objects.create(
            charge_point=connector.charge_point, connector=connector, connector_number=1,
            transaction_id=710_000 + connector.pk, started_at=now - timedelta(hours=2), stopped_at=now,
            energy_wh=12_345)
        SessionCharge.objects.create(
            session=done, status=SessionCharge.Status.PRICED, energy_wh=12_345, currency="USD",
            subtotal=Decimal("3.950"), tax=Decimal("0"), total=Decimal("3.950"),
            period=periods.month_of(now, world.maple.timezone), priced_at=now)
        alert_raise(kind=Alert.Kind.CONNECTOR_FAULTED, message="test", charge_point_id=cp_id, connector_number=2)
    _sync().hset(key(cp_id), mapping={"connected": "1", "schema": schema, "status:1": "Charging",
                                      "power_w:1": "7250", "status:2": "Faulted"})
    previous = latest.site_load_latest(schema)
    latest.put(schema, "test-meter", Reading(now, (Decimal("120.5"), Decimal("80"), Decimal("60"))),
               received_at=now, stale_after_s=60)
    try:
        status, html = page_of(world.acme_manager)
    finally:
        _sync().delete(key(cp_id))
        latest.forget(schema)
        if previous is not None:
            latest.put(schema, previous.meter_key, previous.reading, received_at=previous.received_at,
                       stale_after_s=previous.stale_after_s)
    assert status == 200
    row = row_of(html, "maple-court")
    assert f"{before['online'] + 1} online" in row and "1 faulted" in row
    assert f'data-f="sessions">{before["sessions"] + 1}<' in row
    ev_kw = Decimal(re.search(r'data-f="ev_kw">([0-9.]+)<', row).group(1))
    assert abs(ev_kw - before["ev_kw"] - Decimal("7.25")) <= Decimal("0.1")  # 7,250 W more, to a tenth of a kW
    # The supply: 200 A x 0.8 - 5 = 155 A on L1, the most loaded phase.
    assert "120.5 / 155.0 A (78 %)" in row
    assert f"{before['energy_kwh'] + Decimal('12.3')} kWh" in row
    assert f"{before['revenue'] + Decimal('3.95')} USD" in row
    assert f'data-f="alerts">{before["alerts"] + 1}<' in row


def _figures_row(world) -> dict:
    """What the maple-court line says before the test adds its own (other tests may have left rows)."""
    from apps.console.portfolio import building_summary

    summary = building_summary(world.maple, timezone.now())
    return {"online": summary.online, "sessions": summary.sessions, "ev_kw": summary.ev_kw,
            "energy_kwh": summary.energy_kwh, "revenue": summary.revenue, "alerts": summary.alerts}


@pytest.mark.django_db
def test_the_queries_grow_with_the_buildings_not_with_their_chargers(world):
    def queries(user) -> int:
        client = Client(HTTP_HOST=PUBLIC)
        client.force_login(user)
        client.get("/portfolio/")
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/portfolio/").status_code == 200
        return len(captured.captured_queries)

    two, one = queries(world.acme_manager), queries(world.harbor_manager)  # 2 buildings, 1 building
    per_building = two - one
    assert 0 < per_building <= 12
    for _ in range(5):
        factories.charger(world.maple, f"PQ-{uuid.uuid4().hex[:8].upper()}")
    assert queries(world.acme_manager) == two
