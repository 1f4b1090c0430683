"""What a session would cost, asked on a building's host before plugging in (the world's T-RES and T-VIS)."""

from decimal import Decimal

import pytest

from apps.billing.services import price_quote
from apps.charging.models import Connector
from apps.core.tenants import in_schema

MAPLE = "maple-court.localhost"
HARBOR = "harbor-view.localhost"
URL = "/api/v1/connectors/TEST-MAPLE-1/{}/quote"


def ask(client, connector=1, host=MAPLE, **params):
    return client.get(URL.format(connector), params, HTTP_HOST=host)


@pytest.mark.django_db
def test_the_buildings_people_get_a_quote_and_outsiders_nothing(client, world):
    for person in (world.maple_resident, world.maple_board, world.acme_manager):
        client.force_login(person)
        answer = ask(client, kwh="10", start="2026-03-10T21:00", minutes="120")
        assert answer.status_code == 200, (person, answer.content)
        body = answer.json()
        # 21:00-23:00 local: half at the day rate, half at night, split linearly.
        assert (body["total"], body["currency"], body["tariff"]["code"]) == ("2.50", "USD", "residents")
        assert [(line["window"], line["amount"], line["interpolated"]) for line in body["lines"]] == [
            ("day", "1.60", True), ("night", "0.90", True)]
    for outsider in (world.oak_resident, world.harbor_manager, world.harbor_resident):
        client.force_login(outsider)
        answer = ask(client, kwh="10", start="2026-03-10T21:00", minutes="120")
        assert answer.status_code == 404 and b"2.50" not in answer.content
    client.logout()
    assert ask(client, kwh="10").status_code == 302  # to the login page
    client.force_login(world.harbor_resident)
    assert ask(client, host=HARBOR, kwh="10").status_code == 404  # Maple's charger does not exist there


@pytest.mark.django_db
def test_visitors_and_the_dc_like_connector_are_quoted_their_own_tariff(client, world):
    client.force_login(world.maple_resident)
    visitor = ask(client, kwh="5", start="2026-03-10T14:00", minutes="61", **{"as": "visitor"}).json()
    assert (visitor["tariff"]["code"], visitor["total"]) == ("visitors", "3.00")
    # Connector 2 carries the visitors' tariff for everyone (a connector override beats the default).
    override = ask(client, connector=2, kwh="1", start="2026-03-10T14:00", minutes="11").json()
    assert (override["tariff"]["code"], override["total"]) == ("visitors", "0.60")
    assert "this connector" in override["tariff"]["why"]


@pytest.mark.django_db
def test_idle_time_and_default_duration(client, world):
    client.force_login(world.maple_resident)
    idle = ask(client, kwh="7", start="2026-03-11T00:00", minutes="60", idle_minutes="75").json()
    assert idle["total"] == str(Decimal("1.26") + Decimal("4.50"))
    # No duration: the time the 32 A single-phase connector needs at full power (7,360 W): 81.5 minutes.
    default = ask(client, kwh="10", start="2026-03-10T17:00+00:00").json()
    assert (default["minutes"], default["total"], default["start"]) == (81, "3.20", "2026-03-10T10:00:00-07:00")
    # More energy than the connector can deliver in the time asked: held, as a real session would be.
    held = ask(client, kwh="5", start="2026-03-10T14:00", minutes="11").json()
    assert (held["status"], held["total"]) == ("held", "0.00") and "implausible" in held["hold_reason"]


@pytest.mark.django_db
def test_bad_questions_get_a_clear_answer(client, world):
    client.force_login(world.maple_resident)
    assert ask(client).json() == {"error": "kwh is required: the energy to quote, e.g. kwh=20"}
    assert ask(client, kwh="lots").status_code == 400
    assert "at most 1000" in ask(client, kwh="5000").json()["error"]
    assert "YYYY-MM-DD" in ask(client, kwh="1", start="tomorrow").json()["error"]
    assert "minutes" in ask(client, kwh="1", minutes="-5").json()["error"]
    assert ask(client, kwh="1", **{"as": "king"}).status_code == 400
    assert ask(client, connector=9, kwh="1").status_code == 404


@pytest.mark.django_db
def test_price_quote_service_for_the_visitor_page(world, maple_schema):
    with in_schema(maple_schema):
        connector = Connector.objects.get(charge_point__charge_point_id="TEST-MAPLE-1", connector_id=1)
        quote = price_quote(connector=connector, resident_id=None, energy_wh=5000, as_resident=False)
        assert quote.tariff_code == "visitors" and quote.priced.currency == "USD"
