"""The control loop against the real database, Redis and site-meter push (no mocks of our own parts).

The rule: a run reads the building as it is (tree, open sessions with the currents their chargers
reported, the site meter's latest reading), keeps every connector within every node's limits, hands the
limits to the dispatch (ConnectorLimit rows, queued on commit) with a lease falling to a safe floor, and
records for each connector the constraint that bound it. Requests are debounced: a burst queues one run,
and one building runs one at a time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from apps.charging import services as charging
from apps.charging.models import ChargePoint, ChargingSession, ConnectorLimit
from apps.core import live_store
from apps.core.tenants import in_schema
from apps.electrical import services as electrical
from apps.electrical.models import Circuit, SiteMeter
from apps.electrical.tokens import hash_meter_token
from apps.loadbalancing import services, tasks, triggers
from apps.loadbalancing.models import BalancingRun
from apps.ocpp import live
from tests import factories

TOKEN = "loop-test-meter-token-0001"


def _cabinet(condo, amps: int) -> tuple[ChargePoint, Circuit]:
    """A charger of two single-phase guns behind a cabinet of ``amps`` A per phase, under the supply."""
    cp_id = f"LB-{uuid.uuid4().hex[:8].upper()}"
    charger = factories.charger(condo, cp_id, connectors=2)
    with in_schema(condo.schema_name):
        cabinet = Circuit.objects.create(
            key=f"cab-{uuid.uuid4().hex[:6]}", parent=Circuit.objects.get(key="supply"), max_current_l1_a=amps,
            max_current_l2_a=amps, max_current_l3_a=amps)
        ChargePoint.objects.filter(pk=charger.pk).update(circuit=cabinet)
        charger.refresh_from_db()
    return charger, cabinet


def _online(charger: ChargePoint, schema: str, currents: dict[int, str] | None = None) -> None:
    fields = {"connected": "1", "schema": schema, "channel": "test", "last_seen": str(int(timezone.now().timestamp()))}
    for number, amps in (currents or {}).items():
        fields[f"current_a:{number}:L1"] = amps
        fields[f"current_at:{number}"] = f"{timezone.now().timestamp():.3f}"
    live_store.sync_client().hset(live.key(charger.charge_point_id), mapping=fields)


def _start(charger: ChargePoint, number: int) -> int:
    now = timezone.now()
    return charging.session_start(charge_point_pk=charger.pk, connector_number=number, id_tag="04A1B2C3D4",
                                  meter_start=1000, timestamp=now, received_at=now).session_pk


def _push(meter_key: str, l1: str, django_capture_on_commit_callbacks) -> None:
    body = json.dumps({"timestamp": timezone.now().isoformat(), "current_a": [int(l1), 20, 20]}).encode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = electrical.site_meter_push(meter_key=meter_key, authorization=f"Bearer {TOKEN}",
                                           address="10.9.9.9", body=body)
    assert answer.status == 202, answer.body


@pytest.fixture
def meter(world, db):
    """A site meter of Maple Court for this test; the building otherwise quiet: sessions other tests left open
    are closed (rolled back afterwards) and the balancer's memory of the building is cleared."""
    with in_schema(world.maple.schema_name):
        ChargingSession.objects.filter(stopped_at__isnull=True).update(stopped_at=timezone.now())
        live_store.sync_client().delete(services._state_key(world.maple.schema_name),
                                        services._asked_key(world.maple.schema_name))
        return SiteMeter.objects.create(key=f"lb-{uuid.uuid4().hex[:6]}", circuit=Circuit.objects.get(key="supply"),
                                        source=SiteMeter.Source.API, token_hash=hash_meter_token(TOKEN),
                                        stale_after_s=60)


@pytest.mark.django_db
def test_a_run_shares_a_cabinet_fairly_sends_the_limits_and_says_why(world, meter, django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    charger, cabinet = _cabinet(world.maple, 20)
    with in_schema(schema):
        first, second = _start(charger, 1), _start(charger, 2)
        _online(charger, schema)
        _push(meter.key, "40", django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            result = services.building_rebalance(trigger="test")
        assert dispatches, "the dispatch is queued when the run commits"
        limits = {row.connector.connector_id: row for row in
                  ConnectorLimit.objects.filter(connector__charge_point=charger).select_related("connector")}
        # Two guns behind a 20 A cabinet: 10 A each, floors at or below it, the lease from the settings.
        assert {n: row.desired_a for n, row in limits.items()} == {1: Decimal("10.0"), 2: Decimal("10.0")}
        assert all(row.floor_a is not None and row.floor_a <= row.desired_a for row in limits.values())
        assert all(row.lease_s == 180 for row in limits.values())
        record = result.run.limits[f"{charger.charge_point_id}#1"]
        assert record["why"] == "node-current" and record["node"] == cabinet.key and record["a"] == "10.0"
        assert cabinet.key in record["sentence"]
        assert result.run.meter_age_ms is not None and result.run.meter_age_ms < 60_000
        assert BalancingRun.objects.filter(pk=result.run.pk).exists()
        # The capacity report's throttling reads the same run: two sessions that could take 32 A got 10 A each.
        from apps.core.capacity import throttle_history

        [sample] = [x for x in throttle_history(start=result.run.started_at, end=result.run.started_at
                                                + timedelta(seconds=1)) if x.at == result.run.started_at]
        assert (sample.connectors, sample.wanted_a, sample.allowed_a) == (2, Decimal("64.0"), Decimal("20.0"))
        memory = result.allocation.state.connectors
        assert (memory[f"{charger.charge_point_id}#1"].session_id, memory[f"{charger.charge_point_id}#2"].session_id) \
            == (str(first), str(second))


def test_two_open_sessions_on_one_connector_do_not_stop_the_building_s_balancing(
    world, meter, django_capture_on_commit_callbacks
):
    """Should the records ever hold two open sessions on one gun (a stop never received, not closed yet), the
    run goes on with the newest rather than failing the whole building (which would leave every gun on its
    lease floor)."""
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 20)
    with in_schema(schema):
        first = _start(charger, 1)
        older = ChargingSession.objects.get(pk=first)
        # Written behind the services' back: session_start itself closes the open session of the gun.
        newer = ChargingSession.objects.create(
            charge_point=charger, connector=older.connector, connector_number=1, id_tag="04A1B2C3D4",
            authorization_status="Accepted", started_at=older.started_at + timedelta(minutes=1),
            meter_start_wh=2000)
        _online(charger, schema)
        _push(meter.key, "40", django_capture_on_commit_callbacks)
        result = services.building_rebalance(trigger="test")
        record = result.allocation.state.connectors[f"{charger.charge_point_id}#1"]
        assert record.session_id == str(newer.pk)
        assert Decimal(6) <= Decimal(result.run.limits[f"{charger.charge_point_id}#1"]["a"]) <= Decimal(20)


@pytest.mark.django_db
def test_a_silent_meter_falls_back_to_the_supplys_safe_budget(world, meter, django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 32)
    with in_schema(schema):
        _start(charger, 1)
        _online(charger, schema)
        # No reading at all, and no budget: the EVs get nothing until the meter speaks.
        Circuit.objects.filter(key="supply").update(safe_ev_budget_a=0)
        silent = services.building_rebalance(trigger="test")
        key = f"{charger.charge_point_id}#1"
        assert silent.run.limits[key]["why"] == "meter-stale"
        assert ConnectorLimit.objects.get(connector__charge_point=charger, connector__connector_id=1).desired_a == 0
        # The installer's safe budget: what the EVs may still draw when the meter is silent.
        Circuit.objects.filter(key="supply").update(safe_ev_budget_a=Decimal("16"))
        budget = services.building_rebalance(trigger="test")
        assert Decimal(budget.run.limits[key]["a"]) <= Decimal("16")
        assert Decimal(budget.run.limits[key]["a"]) >= Decimal("6")


@pytest.mark.django_db
def test_a_rise_on_the_meter_lowers_the_limits_at_once(world, meter, django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 16)
    with in_schema(schema):
        _start(charger, 1)
        _online(charger, schema, {1: "0"})
        _push(meter.key, "60", django_capture_on_commit_callbacks)
        before = services.building_rebalance(trigger="test").run.limits[f"{charger.charge_point_id}#1"]
        # Plenty of room at the supply: the cabinet's 16 A, all of it (the idle gun beside it keeps nothing
        # free: a car that plugs in there waits at its 0 A TxDefaultProfile for its first limit).
        assert Decimal(before["a"]) == Decimal("16.0")
        # The A/C starts: the supply's L1 (155 A usable) now carries 150 A of other load.
        _push(meter.key, "150", django_capture_on_commit_callbacks)
        after = services.building_rebalance(trigger="test").run.limits[f"{charger.charge_point_id}#1"]
        assert Decimal(after["a"]) <= Decimal("5.0")
        assert after["why"] in ("node-current", "waiting", "rotation")


@pytest.mark.django_db
def test_an_idle_gun_keeps_its_default_free_only_on_a_charger_that_refuses_0_a(
        world, meter, django_capture_on_commit_callbacks):
    """A charger that takes 0 A gets a 0 A TxDefaultProfile: a car that plugs into its idle gun waits, paused,
    for its first limit, so nothing is kept free for it. One that refuses 0 A starts a new car at its
    default (the gun's 6 A minimum): that much stays free for each of its idle guns."""
    schema = world.maple.schema_name
    takes_zero, _ = _cabinet(world.maple, 20)
    refuses_zero, _ = _cabinet(world.maple, 20)
    with in_schema(schema):
        ChargePoint.objects.filter(pk=refuses_zero.pk).update(smart_charging_quirks={"zero_rejected": True})
        for charger in (takes_zero, refuses_zero):
            _start(charger, 1)
            _online(charger, schema)
        _push(meter.key, "40", django_capture_on_commit_callbacks)
        run = services.building_rebalance(trigger="test").run
    # Each charger: one car on gun 1, gun 2 idle, behind a cabinet of its own of 20 A.
    assert Decimal(run.limits[f"{takes_zero.charge_point_id}#1"]["a"]) == Decimal("20.0")
    assert Decimal(run.limits[f"{refuses_zero.charge_point_id}#1"]["a"]) == Decimal("14.0")
    assert run.limits[f"{takes_zero.charge_point_id}#2"]["why"] == "idle"


@pytest.fixture
def queued() -> Iterator[list[tuple[str, str]]]:
    """The runs asked for, (schema, why), noted here instead of queued for a worker (the hook put back after)."""
    runs: list[tuple[str, str]] = []
    previous = triggers._queue
    triggers.set_queue(lambda schema, why: runs.append((schema, why)))
    yield runs
    triggers.set_queue(previous)


def test_requests_are_debounced_and_one_building_runs_one_at_a_time(world, queued):
    schema = f"lbtest_{uuid.uuid4().hex[:6]}"
    try:
        assert triggers.request_now(schema, "reading 1") is True
        assert triggers.request_now(schema, "reading 2") is False  # one queued run is enough
        assert len(queued) == 1
        ran: list[str] = []

        def body(why: str) -> None:
            ran.append(why)
            if len(ran) == 1:
                # A request while running: marks pending, and this run goes round once more.
                assert triggers.request_now(schema, "session started") is True
                # Another worker taking the same building now finds it locked.
                assert triggers.run(schema, "other worker", lambda w: ran.append("never")) == 0

        assert triggers.run(schema, "reading 1", body) == 2
        assert ran == ["reading 1", "session started"]
        assert triggers.request_now(schema, "later") is True  # nothing pending any more: queued again
    finally:
        redis = live_store.sync_client()
        redis.delete(triggers._pending(schema), triggers._lock(schema))


def test_a_request_left_pending_after_the_last_round_is_queued_again(world, queued):
    """Readings every second and runs of half a second: a request comes in during every round. Its own task found
    the lock taken and left it to the run in progress; after its last round that run must queue it, or the
    mark would swallow every request (the readings that show a rise too) until it expires."""
    schema = f"lbtest_{uuid.uuid4().hex[:6]}"
    try:
        assert triggers.request_now(schema, "reading 0") is True
        ran: list[str] = []

        def body(why: str) -> None:
            ran.append(why)
            assert triggers.request_now(schema, f"reading {len(ran)}") is True
            assert triggers.run(schema, "its own task", lambda w: ran.append("never")) == 0

        assert triggers.run(schema, "reading 0", body, rounds=3) == 3
        assert ran == ["reading 0", "reading 1", "reading 2"]
        # "reading 3" is still pending: queued again, and its mark still folds the next readings into it.
        assert queued == [(schema, "reading 0"), (schema, "reading 1"), (schema, "reading 2"),
                          (schema, "reading 3"), (schema, "reading 3")]
        assert triggers.request_now(schema, "reading 4") is False
        assert triggers.run(schema, "reading 3", lambda why: ran.append(why)) == 1
        assert ran[-1] == "reading 3"
    finally:
        redis = live_store.sync_client()
        redis.delete(triggers._pending(schema), triggers._lock(schema))


@pytest.mark.django_db
def test_a_session_start_asks_for_a_run_once_it_commits(world, queued, django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 32)
    try:
        live_store.sync_client().delete(triggers._pending(schema))
        with in_schema(schema), django_capture_on_commit_callbacks(execute=True):
            _start(charger, 1)
        assert queued and queued[0][0] == schema and "started" in queued[0][1]
    finally:
        live_store.sync_client().delete(triggers._pending(schema))


def test_the_state_round_trips_through_its_codec():
    from datetime import UTC, datetime

    from apps.loadbalancing import allocator, statecodec

    now = datetime(2026, 11, 30, 3, tzinfo=UTC)
    state = allocator.AllocatorState(
        estimates={"supply": allocator.NonEvEstimate((1000, 2000, 3000), (now, None, None), (5, 0, 0), now)},
        connectors={"A#1": allocator.ConnectorMemory("42", True, now - timedelta(minutes=5), 16000, now, None, True)},
    )
    assert statecodec.decode(statecodec.encode(state)) == state
    assert statecodec.decode("not json") is None
    assert statecodec.decode('{"v": 0}') is None


@pytest.mark.django_db
def test_only_a_new_connector_status_asks_for_a_run(world, queued, django_capture_on_commit_callbacks):
    """A charger re-sends its statuses after every reconnect: the same status again is recorded (its time moves
    on) but asks for no run; a different one does."""
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 32)
    redis = live_store.sync_client()

    def status(value: str, at) -> None:
        redis.delete(triggers._pending(schema))
        with in_schema(schema), django_capture_on_commit_callbacks(execute=True):
            charging.connector_record_status(charge_point_pk=charger.pk, charge_point_id=charger.charge_point_id,
                                             connector_number=1, status=value, error_code="NoError", at=at)

    try:
        first = timezone.now()
        status("Preparing", first)
        assert [why for _, why in queued] == [f"{charger.charge_point_id}#1 Preparing"]
        status("Preparing", first + timedelta(seconds=5))
        assert len(queued) == 1  # the same status: no run
        with in_schema(schema):
            assert charger.connectors.get(connector_id=1).status_at == first + timedelta(seconds=5)
        status("Charging", first + timedelta(seconds=9))
        assert [why for _, why in queued][1:] == [f"{charger.charge_point_id}#1 Charging"]
    finally:
        redis.delete(triggers._pending(schema))


@pytest.mark.django_db
def test_a_car_that_has_its_energy_is_not_counted_as_throttled(world, meter):
    from apps.core.capacity import throttle_history

    now = timezone.now()
    with in_schema(world.maple.schema_name):
        BalancingRun.objects.create(started_at=now, trigger="test", duration_us=1, allocate_us=1, sessions=2, changed=0,
                                    non_ev_a={}, nodes={}, warnings=[], limits={
            "A#1": {"why": "node-current", "a": "10.0", "grid_a": ["10", "0", "0"], "max_a": "32"},
            "A#2": {"why": "done", "a": "0", "grid_a": ["0", "0", "0"], "max_a": "32"},
        })
        [sample] = [x for x in throttle_history(start=now, end=now + timedelta(seconds=1)) if x.at == now]
    assert (sample.connectors, sample.wanted_a, sample.allowed_a) == (1, Decimal(32), Decimal("10.0"))


def _asked(charger: ChargePoint) -> dict[int, tuple]:
    """Each gun's limit row: (desired, updated at, requested at)."""
    return {row.connector.connector_id: (row.desired_a, row.updated_at, row.requested_at) for row in
            ConnectorLimit.objects.filter(connector__charge_point=charger).select_related("connector")}


@pytest.mark.django_db
def test_a_periodic_refresh_asks_for_unchanged_limits_again_only_when_due(
        world, meter, django_capture_on_commit_callbacks):
    """The refresh reads, allocates and records every time; it hands the same limits to the dispatch again only
    once a lease has passed or when a limit waits for its transaction. A run on an event always does."""
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 20)
    with in_schema(schema):
        _start(charger, 1), _start(charger, 2)
        _online(charger, schema)
        _push(meter.key, "40", django_capture_on_commit_callbacks)
        services.building_rebalance(trigger="test")
        asked = _asked(charger)
        assert {n: a[0] for n, a in asked.items()} == {1: Decimal("10.0"), 2: Decimal("10.0")}
        # The mark of what was asked lives a lease (the dispatch renews the leases on its own schedule).
        ttl_ms = live_store.sync_client().pttl(services._asked_key(schema))
        assert settings.LOADBALANCING_LEASE_S * 1000 - 5000 < ttl_ms <= settings.LOADBALANCING_LEASE_S * 1000

        runs = BalancingRun.objects.count()
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            result = services.building_rebalance(trigger=services.PERIODIC, refresh=True)
        assert not dispatches and result.run.changed == 0 and _asked(charger) == asked  # nothing written
        assert BalancingRun.objects.count() == runs + 1  # but read, allocated and recorded
        assert result.run.limits[f"{charger.charge_point_id}#1"]["a"] == "10.0"

        # An event: asked again even though nothing changed (a new request time, a dispatch).
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            services.building_rebalance(trigger="site meter", refresh=False)
        assert dispatches and _asked(charger)[1][1] > asked[1][1]
        asked = _asked(charger)

        # A limit waiting for its transaction is asked again by the refresh (that is what sends it).
        ConnectorLimit.objects.filter(connector__charge_point=charger, connector__connector_id=2).update(
            status=ConnectorLimit.Status.NO_TRANSACTION)
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            services.building_rebalance(trigger=services.PERIODIC, refresh=True)
        assert dispatches and _asked(charger)[2][2] > asked[2][2]
        ConnectorLimit.objects.filter(connector__charge_point=charger).update(status=ConnectorLimit.Status.ACCEPTED)
        asked = _asked(charger)

        # A lease later (the mark gone): asked again.
        live_store.sync_client().delete(services._asked_key(schema))
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            services.building_rebalance(trigger=services.PERIODIC, refresh=True)
        assert dispatches and _asked(charger)[1][1] > asked[1][1]

        # The allocation changed: asked at once, by the refresh too.
        _push(meter.key, "150", django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            result = services.building_rebalance(trigger=services.PERIODIC, refresh=True)
        assert dispatches and result.run.changed == 2
        assert all(a[0] < Decimal("10.0") for a in _asked(charger).values())


@pytest.mark.django_db
def test_the_refresh_runs_its_buildings_in_one_task_and_never_skips_a_request_it_takes_over(
        world, meter, django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    charger, _ = _cabinet(world.maple, 20)
    redis = live_store.sync_client()
    with in_schema(schema):
        _start(charger, 1)
        _online(charger, schema)
        _push(meter.key, "40", django_capture_on_commit_callbacks)
        services.building_rebalance(trigger="test")
        asked = _asked(charger)
    redis.delete(triggers._pending(schema))  # the reading's request: that run is done
    try:
        # A run another worker holds: the refresh leaves the building to it.
        redis.set(triggers._lock(schema), "other", px=5000)
        assert tasks.rebalance_buildings([schema]) == 0
        redis.delete(triggers._lock(schema))
        # Nothing changed: a refresh run, recorded, nothing asked again.
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            assert tasks.rebalance_buildings([schema]) == 1
        with in_schema(schema):
            assert BalancingRun.objects.order_by("-id").first().trigger == services.PERIODIC
            assert not dispatches and _asked(charger) == asked
        # A request came in (its run queued, not started yet): the refresh takes it over as the event it is.
        redis.set(triggers._pending(schema), "session 42 started", px=10_000)
        with django_capture_on_commit_callbacks(execute=False) as dispatches:
            assert tasks.rebalance_buildings([schema]) == 1
        with in_schema(schema):
            assert BalancingRun.objects.order_by("-id").first().trigger == "session 42 started"
            assert dispatches and _asked(charger)[1][1] > asked[1][1]
    finally:
        redis.delete(triggers._lock(schema), triggers._pending(schema))
