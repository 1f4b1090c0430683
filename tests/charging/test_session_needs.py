"""What a resident wants from their open session: PUT /api/v1/sessions/<id>/needs on the building's host."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from apps.charging import services as charging
from apps.charging.models import ChargingSession
from apps.core.tenants import in_schema
from tests import factories

MAPLE = "maple-court.localhost"
HARBOR = "harbor-view.localhost"
ALICE_TAG = "04A1B2C3D4"
LA = ZoneInfo("America/Los_Angeles")


def url(pk: int) -> str:
    return f"/api/v1/sessions/{pk}/needs"


def put(client, pk, body, host=MAPLE):
    return client.put(url(pk), json.dumps(body) if not isinstance(body, bytes) else body,
                      content_type="application/json", HTTP_HOST=host)


@pytest.fixture
def alice_session(world, db) -> int:
    charger = factories.charger(world.maple, f"NEEDS-{uuid.uuid4().hex[:8].upper()}", connectors=1)
    with in_schema(world.maple.schema_name):
        now = timezone.now()
        started = charging.session_start(charge_point_pk=charger.pk, connector_number=1, id_tag=ALICE_TAG,
                                         meter_start=1000, timestamp=now, received_at=now)
        assert ChargingSession.objects.get(pk=started.session_pk).resident.user == world.maple_resident
        return started.session_pk


def tomorrow_7_local() -> datetime:
    local = timezone.now().astimezone(LA) + timedelta(days=1)
    return local.replace(hour=7, minute=0, second=0, microsecond=0)


@pytest.mark.django_db
def test_the_resident_says_what_the_car_needs_and_reads_it_back(client, world, alice_session,
                                                                 django_capture_on_commit_callbacks):
    client.force_login(world.maple_resident)
    ready = tomorrow_7_local()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = put(client, alice_session, {"energy_wh": 24_000, "ready_by": ready.strftime("%Y-%m-%dT%H:%M")})
    assert answer.status_code == 200, answer.content
    assert callbacks, "the building is rebalanced once the change commits"
    body = answer.json()
    # A time without an offset is the building's local time (Maple Court: Los Angeles).
    assert (body["energy_wh"], datetime.fromisoformat(body["ready_by"])) == (24_000, ready)
    with in_schema(world.maple.schema_name):
        row = ChargingSession.objects.get(pk=alice_session)
        assert (row.wanted_energy_wh, row.ready_by) == (24_000, ready)
    assert client.get(url(alice_session), HTTP_HOST=MAPLE).json()["energy_wh"] == 24_000
    # null clears either: the balancer then estimates it.
    cleared = put(client, alice_session, {"energy_wh": None, "ready_by": ready.isoformat()}).json()
    assert cleared["energy_wh"] is None and cleared["ready_by"] is not None


@pytest.mark.django_db
def test_nobody_else_sees_or_changes_a_residents_needs(client, world, alice_session):
    other = factories.resident(world.maple, f"bob-{uuid.uuid4().hex[:6]}@maple.test", "101")
    for person in (other, world.maple_board, world.acme_manager, world.oak_resident, world.harbor_resident):
        client.force_login(person)
        assert client.get(url(alice_session), HTTP_HOST=MAPLE).status_code == 404, person
        assert put(client, alice_session, {"energy_wh": 1_000}).status_code == 404, person
    client.force_login(world.harbor_resident)
    assert put(client, alice_session, {"energy_wh": 1_000}, host=HARBOR).status_code == 404
    client.logout()
    assert client.get(url(alice_session), HTTP_HOST=MAPLE).status_code == 302  # to the login page
    with in_schema(world.maple.schema_name):
        assert ChargingSession.objects.get(pk=alice_session).wanted_energy_wh is None


@pytest.mark.django_db
def test_bad_needs_get_a_clear_answer_and_change_nothing(client, world, alice_session):
    client.force_login(world.maple_resident)
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    far = (timezone.now() + timedelta(days=8)).isoformat()
    for body, words in [
        (b"not json", "JSON"), ([1, 2], "object"), ({"energy_wh": "lots"}, "whole number"),
        ({"energy_wh": 20.5}, "whole number"), ({"energy_wh": True}, "whole number"),
        ({"energy_wh": 0}, "above 0"), ({"energy_wh": 500_000}, "at most 200000"),
        ({"ready_by": "tomorrow"}, "YYYY-MM-DD"), ({"ready_by": past}, "in the future"),
        ({"ready_by": far}, "within 7 days"), ({"kwh": 20}, "unknown fields: kwh"),
    ]:
        answer = put(client, alice_session, body)
        assert answer.status_code == 400, body
        assert words in answer.json()["error"], (body, answer.json())
    with in_schema(world.maple.schema_name):
        row = ChargingSession.objects.get(pk=alice_session)
        assert (row.wanted_energy_wh, row.ready_by) == (None, None)


@pytest.mark.django_db
def test_an_ended_session_takes_no_needs(client, world, alice_session):
    with in_schema(world.maple.schema_name):
        ChargingSession.objects.filter(pk=alice_session).update(stopped_at=timezone.now())
    client.force_login(world.maple_resident)
    answer = put(client, alice_session, {"energy_wh": 10_000})
    assert answer.status_code == 409 and "ended" in answer.json()["error"]
    assert client.get(url(alice_session), HTTP_HOST=MAPLE).json()["open"] is False


@pytest.mark.django_db
def test_a_put_without_the_csrf_token_is_refused(world, alice_session):
    """The endpoint works on the resident's login session: a page of another site cannot post to it."""
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(world.maple_resident)
    assert put(strict, alice_session, {"energy_wh": 10_000}).status_code == 403
    with in_schema(world.maple.schema_name):
        assert ChargingSession.objects.get(pk=alice_session).wanted_energy_wh is None
