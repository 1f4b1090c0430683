"""The REST API: the web app's permissions (managers and board read the building, a resident reads their own), a
token for machines, bad queries refused with what and where, an OpenAPI description served with its docs from
the platform itself, and a fuzzer against the running server: no request makes it answer 500, and a person of
another building reaches nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from apps.buildings.models import Resident
from apps.core.tenants import in_public_schema, in_schema
from apps.statements import services as statements
from apps.statements.models import StatementLine
from tests import factories

HOST = "maple-court.localhost"
PATHS = ("/api/v1/chargers/", "/api/v1/sessions/", "/api/v1/statements/", "/api/v1/tariffs/",
         "/api/v1/site-meter-readings/")


def token_of(user) -> str:
    with in_public_schema():
        return Token.objects.get_or_create(user=user)[0].key


def api(user=None, host: str = HOST) -> Client:
    headers = {"HTTP_HOST": host}
    if user is not None:
        headers["HTTP_AUTHORIZATION"] = f"Token {token_of(user)}"
    return Client(**headers)


@pytest.mark.django_db
def test_a_manager_reads_the_buildings_chargers_with_their_limits_and_live_state(world):
    answer = api(world.acme_manager).get("/api/v1/chargers/")
    assert answer.status_code == 200
    data = answer.json()
    assert data["count"] >= 1 and {c["charge_point_id"] for c in data["results"]} >= {"TEST-MAPLE-1"}
    assert not any(c["charge_point_id"].startswith("TEST-HARBOR") for c in data["results"])
    [maple] = [c for c in data["results"] if c["charge_point_id"] == "TEST-MAPLE-1"]
    assert [c["connector_id"] for c in maple["connectors"]] == [1, 2]
    assert maple["connectors"][0]["max_current_a"] == "32.0" and maple["connectors"][0]["parking_spot"] == "P01"
    assert api(world.maple_board).get("/api/v1/chargers/").status_code == 200


def _statement_for(world, user, amount: str) -> int:
    with in_schema(world.maple.schema_name):
        resident = Resident.objects.get(user=user)
        draft = statements.statement_draft_create(resident=resident, currency="USD", lines=[statements.LineInput(
            kind=StatementLine.Kind.SESSION, description="Session", amount=Decimal(amount))])
        return statements.statement_finalize(statement_id=draft.pk).pk


@pytest.mark.django_db
def test_a_resident_reads_their_own_sessions_and_statements_and_nothing_of_the_building(world):
    other = factories.resident(world.maple, "api-neighbour@maple.test", "909", id_tags=("A909",))
    mine, theirs = _statement_for(world, world.maple_resident, "4.10"), _statement_for(world, other, "9.99")
    alice = api(world.maple_resident)
    listed = alice.get("/api/v1/statements/").json()["results"]
    assert [s["id"] for s in listed] == [mine] and listed[0]["total"] == "4.10" and listed[0]["unit"] == "101"
    assert {s["id"] for s in api(world.maple_board).get("/api/v1/statements/").json()["results"]} >= {mine, theirs}
    assert alice.get("/api/v1/chargers/").status_code == 404
    assert alice.get("/api/v1/site-meter-readings/").status_code == 404
    tariffs = alice.get("/api/v1/tariffs/").json()["results"]
    residents = next(t for t in tariffs if t["code"] == "residents")
    assert "$0.32 per kWh (day)" in residents["versions"][0]["in_words"]


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["oak_resident", "harbor_manager", "harbor_resident"])
def test_people_of_other_buildings_get_nothing(world, who):
    client = api(getattr(world, who))
    for path in PATHS:
        assert client.get(path).status_code == 404, path


@pytest.mark.django_db
def test_without_a_token_or_with_a_wrong_one_nothing_is_read(world):
    for path in PATHS:
        assert api().get(path).status_code in (401, 403), path
    wrong = Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION="Token 0000000000000000000000000000000000000000")
    assert wrong.get("/api/v1/sessions/").status_code == 401


@pytest.mark.django_db
def test_bad_queries_are_refused_with_what_and_where(world):
    client = api(world.acme_manager)
    answer = client.get("/api/v1/sessions/?since=yesterday&status=maybe")
    assert answer.status_code == 400
    assert set(answer.json()) == {"since", "status"} and "maybe" in json.dumps(answer.json())
    answer = client.get("/api/v1/sessions/?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z")
    assert answer.status_code == 400 and "until" in answer.json()
    assert client.get("/api/v1/sessions/?page=9999").status_code == 404
    assert client.get("/api/v1/site-meter-readings/?meter=not%20a%20slug").status_code == 400


@pytest.mark.django_db
def test_the_openapi_description_and_its_docs_are_served_by_the_platform(world):
    schema = Client(HTTP_HOST=HOST).get("/api/schema/?format=json")
    assert schema.status_code == 200
    document = schema.json()
    assert document["openapi"].startswith("3.") and set(PATHS) <= set(document["paths"])
    docs = Client(HTTP_HOST=HOST).get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and "/static/drf_spectacular_sidecar/" in docs and "cdn" not in docs.lower()


@pytest.mark.django_db
def test_the_token_command_prints_rotates_and_revokes(world, capsys):
    call_command("api_token", "manager@acme.test")
    first = capsys.readouterr().out.strip()
    assert api_with(first).get("/api/v1/chargers/").status_code == 200
    call_command("api_token", "manager@acme.test", "--rotate")
    second = capsys.readouterr().out.strip()
    assert second != first and api_with(first).get("/api/v1/chargers/").status_code == 401
    call_command("api_token", "manager@acme.test", "--revoke")
    assert api_with(second).get("/api/v1/chargers/").status_code == 401


def api_with(key: str) -> Client:
    return Client(HTTP_HOST=HOST, HTTP_AUTHORIZATION=f"Token {key}")


@pytest.mark.django_db
def test_sessions_carry_their_cost_once_priced_and_none_while_held(world):
    from datetime import timedelta

    from django.utils import timezone

    from apps.billing.models import SessionCharge
    from apps.charging.models import ChargePoint, ChargingSession

    now = timezone.now()
    with in_schema(world.maple.schema_name):
        cp = ChargePoint.objects.get(charge_point_id="TEST-MAPLE-1")
        alice = Resident.objects.get(user=world.maple_resident)
        made = []
        for n, (status, total) in enumerate((("priced", Decimal("2.336")), ("held", Decimal("0")))):
            session = ChargingSession.objects.create(
                charge_point=cp, connector_number=1, transaction_id=700_100 + n, resident=alice,
                started_at=now - timedelta(hours=3 - n), stopped_at=now - timedelta(hours=2 - n), energy_wh=7300)
            SessionCharge.objects.create(session=session, status=status, energy_wh=7300, currency="USD",
                                         subtotal=total, tax=Decimal(0), total=total, priced_at=now,
                                         period=now.date().replace(day=1))
            made.append(session.pk)
    rows = {s["id"]: s for s in api(world.maple_resident).get("/api/v1/sessions/?status=finished").json()["results"]}
    assert rows[made[0]]["cost"] == {"status": "priced", "currency": "USD", "total": "2.336"}
    assert rows[made[1]]["cost"] == {"status": "held", "currency": "USD", "total": None}
    assert rows[made[0]]["energy_wh"] == 7300 and rows[made[0]]["unit"] == "101"
    assert api(world.maple_resident).get("/api/v1/sessions/?status=open").json()["count"] == 0
