"""The site meter's HTTP push, through Django's test client on the building's own host.

Every access case includes another building's meter token, which must get nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.core.tenants import in_schema
from apps.electrical import events, latest
from apps.electrical.models import SiteMeterReading, SiteMeterRefusal
from apps.electrical.services import token_failures
from tests.electrical.conftest import HARBOR, MAPLE, OAK, unique_address
from tests.helpers import iso

pytestmark = pytest.mark.django_db


def push(client, meter_key, token, data, *, host=MAPLE, address=None, raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.post(f"/api/v1/site-meters/{meter_key}/readings", data=raw if raw is not None else json.dumps(data),
                       content_type="application/json", HTTP_HOST=host, REMOTE_ADDR=address or unique_address(),
                       **headers)


def stored(schema, key):
    with in_schema(schema):
        return list(SiteMeterReading.objects.filter(meter__key=key).order_by("sampled_at"))


def refusals(schema, key) -> dict[str, int]:
    with in_schema(schema):
        return dict(SiteMeterRefusal.objects.filter(meter__key=key).values_list("reason", "count"))


@pytest.fixture
def heard():
    """What the layers above would hear through apps.electrical.events."""
    calls = []

    def listener(schema_name, meter_key, reading):
        calls.append((schema_name, meter_key, reading))

    events.on_site_reading(listener)
    yield calls
    events.remove_site_reading_listener(listener)


def test_one_reading_is_stored_held_as_latest_and_announced(client, world, maple_meter, heard,
                                                           django_capture_on_commit_callbacks):
    at = timezone.now().replace(microsecond=0) - timedelta(seconds=2)
    with django_capture_on_commit_callbacks(execute=True):
        response = push(client, maple_meter.key, maple_meter.token,
                        {"timestamp": iso(at), "current_a": [41.2, 38, 44.9]})
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 1}
    (row,) = stored(world.maple.schema_name, maple_meter.key)
    assert row.sampled_at == at
    assert (row.current_l1_a, row.current_l2_a, row.current_l3_a) == (Decimal("41.2"), Decimal("38.0"),
                                                                      Decimal("44.9"))
    held = latest.site_load_latest(world.maple.schema_name)
    assert held is not None and held.meter_key == maple_meter.key
    assert held.reading.currents_a == (Decimal("41.2"), Decimal("38.0"), Decimal("44.9"))
    assert 1 <= held.age_s() < 30
    assert not latest.site_meter_is_stale(world.maple.schema_name)
    assert [(s, k, r.sampled_at) for s, k, r in heard] == [(world.maple.schema_name, maple_meter.key, at)]


def test_a_batch_of_power_readings_and_its_replay_stored_once(client, world, maple_meter, heard,
                                                               django_capture_on_commit_callbacks):
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    batch = {"readings": [{"timestamp": iso(start + timedelta(seconds=2 * i)), "power_w": [230 * i, 0, 2300]}
                          for i in range(100)]}
    with django_capture_on_commit_callbacks(execute=True):
        first = push(client, maple_meter.key, maple_meter.token, batch)
    assert first.status_code == 202 and first.json() == {"accepted": 100}
    with django_capture_on_commit_callbacks(execute=True):
        again = push(client, maple_meter.key, maple_meter.token, batch)
    assert again.status_code == 202 and again.json() == {"accepted": 100, "already_stored": 100}
    rows = stored(world.maple.schema_name, maple_meter.key)
    assert len(rows) == 100
    assert (rows[7].current_l1_a, rows[7].current_l3_a, rows[7].power_l1_w) == (Decimal("7.0"), Decimal("10.0"), 1610)
    assert len(heard) == 100  # the replay announced nothing
    held = latest.site_load_latest(world.maple.schema_name)
    assert held.reading.sampled_at == start + timedelta(seconds=2 * 99)


def test_an_older_batch_does_not_move_the_latest_back(client, world, maple_meter, django_capture_on_commit_callbacks):
    now = timezone.now().replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=True):
        push(client, maple_meter.key, maple_meter.token, {"timestamp": iso(now), "current_a": [5, 5, 5]})
        push(client, maple_meter.key, maple_meter.token,
             {"timestamp": iso(now - timedelta(minutes=1)), "current_a": [9, 9, 9]})
    assert latest.site_load_latest(world.maple.schema_name).reading.currents_a == (Decimal(5),) * 3
    assert len(stored(world.maple.schema_name, maple_meter.key)) == 2


@pytest.mark.parametrize(("data", "where", "message"), [
    ({"timestamp": "soon", "current_a": [1, 1, 1]}, "timestamp", "must be an RFC 3339 time"),
    ({"readings": [{"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1, 1]}] * 3
      + [{"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, "x", 1]}]}, "readings[3].current_a[1]",
     "must be a number"),
    ({"timestamp": "2026-11-30T01:15:00Z", "current_a": [1, 1]}, "current_a", "must be a list of three values"),
    ({"timestamp": "2026-11-30T01:15:00Z"}, "(top level)", "has neither current_a nor power_w"),
    ({"readings": []}, "readings", "is empty"),
])
def test_a_bad_body_is_400_naming_what_and_where_and_nothing_is_stored(client, world, maple_meter, data, where,
                                                                        message):
    response = push(client, maple_meter.key, maple_meter.token, data)
    assert response.status_code == 400
    problems = response.json()["problems"]
    assert any(p["where"] == where and p["message"].startswith(message) for p in problems), problems
    assert any(p["text"].startswith(f"{where}: {message}") for p in problems)
    assert stored(world.maple.schema_name, maple_meter.key) == []
    assert refusals(world.maple.schema_name, maple_meter.key) == {"bad_body": 1}


def test_not_json_is_400(client, world, maple_meter):
    response = push(client, maple_meter.key, maple_meter.token, None, raw="timestamp=now")
    assert response.status_code == 400
    assert response.json()["problems"][0]["text"].startswith("(top level): the body is not JSON")


def test_future_and_implausible_readings_are_refused_counted_and_never_used(client, world, maple_meter,
                                                                          django_capture_on_commit_callbacks):
    now = timezone.now().replace(microsecond=0)
    batch = {"readings": [
        {"timestamp": iso(now - timedelta(seconds=30)), "current_a": [10, 10, 10]},
        {"timestamp": iso(now + timedelta(minutes=5)), "current_a": [11, 11, 11]},
        {"timestamp": iso(now - timedelta(seconds=20)), "current_a": [999, 0, 0]},
        {"timestamp": iso(now - timedelta(seconds=10)), "current_a": [0, -3, 0]},
    ]}
    with django_capture_on_commit_callbacks(execute=True):
        response = push(client, maple_meter.key, maple_meter.token, batch)
    assert response.status_code == 202
    answer = response.json()
    assert answer["accepted"] == 1
    assert [(r["where"], r["reason"]) for r in answer["refused"]] == [
        ("readings[1].timestamp", "future"), ("readings[2].current_a[0]", "implausible"),
        ("readings[3].current_a[1]", "implausible")]
    assert answer["refused"][1]["message"].startswith("must be a number between 0 and 400.0 A")
    assert [r.current_l1_a for r in stored(world.maple.schema_name, maple_meter.key)] == [Decimal(10)]
    assert refusals(world.maple.schema_name, maple_meter.key) == {"future": 1, "implausible": 2}
    # The spike never became the building's load.
    assert latest.site_load_latest(world.maple.schema_name).reading.currents_a == (Decimal(10),) * 3


def test_wrong_missing_or_foreign_tokens_and_unknown_ids_all_get_the_same_401(client, world, maple_meter,
                                                                               make_api_meter):
    harbor_meter = make_api_meter(world.harbor_view)
    reading = {"timestamp": iso(timezone.now()), "current_a": [1, 1, 1]}
    answers = [
        push(client, maple_meter.key, "wrong-token-value", reading),
        push(client, maple_meter.key, None, reading),
        # The right token, but not as a bearer token.
        client.post(f"/api/v1/site-meters/{maple_meter.key}/readings", data=json.dumps(reading),
                    content_type="application/json", HTTP_HOST=MAPLE, REMOTE_ADDR=unique_address(),
                    HTTP_AUTHORIZATION=f"Basic {maple_meter.token}"),
        # Harbor View's meter and token, on Maple Court's host: nothing.
        push(client, harbor_meter.key, harbor_meter.token, reading),
        # Maple Court's meter and token on another building's host (of the same company, then another).
        push(client, maple_meter.key, maple_meter.token, reading, host=OAK),
        push(client, maple_meter.key, maple_meter.token, reading, host=HARBOR),
        push(client, "no-such-meter", maple_meter.token, reading),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert answer.json() == {"error": "unauthorized"}
        assert answer["WWW-Authenticate"] == 'Bearer realm="site-meter"'
    assert stored(world.harbor_view.schema_name, harbor_meter.key) == []
    assert refusals(world.maple.schema_name, maple_meter.key) == {"bad_token": 3}
    assert stored(world.maple.schema_name, maple_meter.key) == []
    # The rightful meter on its own host gets in.
    assert push(client, maple_meter.key, maple_meter.token, reading).status_code == 202
    assert len(stored(world.maple.schema_name, maple_meter.key)) == 1


def test_token_failures_are_rate_limited_per_meter_and_per_address(client, world, maple_meter, settings):
    settings.SITE_METER_AUTH_FAILURES_PER_METER = 3
    reading = {"timestamp": iso(timezone.now()), "current_a": [1, 1, 1]}
    for _ in range(3):
        assert push(client, maple_meter.key, "guess-guess-guess", reading).status_code == 401
    # Locked: even the right token is refused unchecked until the back-off ends.
    assert push(client, maple_meter.key, maple_meter.token, reading).status_code == 401
    assert refusals(world.maple.schema_name, maple_meter.key)["bad_token"] == 4
    assert stored(world.maple.schema_name, maple_meter.key) == []
    ttl = token_failures_ttl(f"{world.maple.schema_name}:{maple_meter.key}")
    assert 0 < ttl <= token_failures.FIRST_BACKOFF_S
    clear_lock(f"{world.maple.schema_name}:{maple_meter.key}")
    assert push(client, maple_meter.key, maple_meter.token, reading).status_code == 202

    # Per address: one address guessing over many meter ids is stopped too.
    settings.SITE_METER_AUTH_FAILURES_PER_ADDRESS = 4
    address = unique_address()
    for n in range(4):
        assert push(client, f"guess-{n}", "x" * 20, reading, address=address).status_code == 401
    assert push(client, maple_meter.key, maple_meter.token, reading, address=address).status_code == 401
    assert push(client, maple_meter.key, maple_meter.token, reading).status_code == 202


def token_failures_ttl(key: str) -> int:
    from apps.core import live_store

    return live_store.sync_client().ttl(token_failures.lock_keys(meter=key)[0])


def clear_lock(key: str) -> None:
    from apps.core import live_store

    live_store.sync_client().delete(*token_failures.lock_keys(meter=key))


def test_only_post(client, world, maple_meter):
    response = client.get(f"/api/v1/site-meters/{maple_meter.key}/readings", HTTP_HOST=MAPLE)
    assert response.status_code == 405


def test_managers_can_read_the_meters_refusals_and_latest(client, world, maple_meter,
                                                          django_capture_on_commit_callbacks):
    from apps.electrical.selectors import site_meter_status

    now = timezone.now().replace(microsecond=0)
    with django_capture_on_commit_callbacks(execute=True):
        push(client, maple_meter.key, maple_meter.token, {"readings": [
            {"timestamp": iso(now), "current_a": [3, 3, 3]},
            {"timestamp": iso(now - timedelta(seconds=1)), "current_a": [999, 3, 3]}]})
    push(client, maple_meter.key, "not-the-token", {"timestamp": iso(now), "current_a": [3, 3, 3]})
    with in_schema(world.maple.schema_name):
        status = site_meter_status()
    assert status.key == maple_meter.key and status.source == "api"
    assert status.latest.reading.currents_a == (Decimal(3),) * 3
    assert [(r.reason, r.count) for r in status.refusals] == [("bad_token", 1), ("implausible", 1)]
    assert status.refusals[1].last_detail.startswith("readings[1].current_a[0]: must be a number between 0 and")
    with in_schema(world.harbor_view.schema_name):
        assert site_meter_status() is None  # Harbor View has no meter: nothing of Maple's shows there
