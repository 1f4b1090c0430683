"""Charging limits on the wire: the real consumer, chargers that keep and refuse profiles the way real models
do, and the dispatch's own code run as the Celery worker runs it (in a thread of its own)."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from apps.alerts.models import Alert
from apps.charging import leases
from apps.charging import smart_charging as limits_db
from apps.charging.models import ChargePoint, Connector, ConnectorLimit
from apps.charging.smart_charging import Limit, limits_set
from apps.core.tenants import run_in_schema
from apps.ocpp import charging_profiles, live, smart_charging
from tests.dispatching import quiet_building
from tests.helpers import async_wait_for, iso
from tests.ocpp.charger import FakeCharger, ProfileMemory
from tests.ocpp.conftest import communicator
from tests.servers import CeleryWorker

LEASE_S = 120


@pytest.fixture
def dispatch_requests():
    """The buildings whose dispatch was asked for (the hook apps.ocpp registers queues a Celery task; here the
    tests run the dispatch themselves, so that no task is left in the broker for a later worker)."""
    requested: list[str] = []
    limits_db.limit_dispatch_queue(requested.append)
    yield requested
    from apps.ocpp.tasks import queue_dispatch

    limits_db.limit_dispatch_queue(queue_dispatch)


async def connect(charge_point_id: str, memory: ProfileMemory) -> FakeCharger:
    comm = communicator(charge_point_id)
    assert (await comm.connect(timeout=5))[0]
    charger = FakeCharger(comm, answers=memory.answers())
    charger.charge_point_id = charge_point_id
    assert (await charger.boot())[2]["status"] == "Accepted"
    await charger.settle(0.5)  # GetConfiguration and the metering changes
    return charger


async def start(charger: FakeCharger, connector: int, id_tag: str | None = None) -> int:
    """A transaction on the connector. The card is nobody's (the session is stored all the same): a resident's
    card would leave a session open that other tests' residents would then be refused for."""
    id_tag = id_tag or f"SC{uuid.uuid4().hex[:12].upper()}"
    answer = await charger.call("StartTransaction", {"connectorId": connector, "idTag": id_tag, "meterStart": 0,
                                                     "timestamp": iso(timezone.now())})
    return answer[2]["transactionId"]


async def connector_pk(schema: str, charge_point_id: str, number: int) -> int:
    return await run_in_schema(schema, lambda: Connector.objects.get(
        charge_point__charge_point_id=charge_point_id, connector_id=number).pk)


async def set_limits(schema: str, limits: dict[int, str | Decimal], lease_s: int = LEASE_S) -> int:
    return await run_in_schema(schema, limits_set, limits={pk: Limit(Decimal(a)) for pk, a in limits.items()},
                               lease_s=lease_s, reason="test")


async def dispatch(schema: str, *chargers: FakeCharger, timeout: float | None = None) -> smart_charging.DispatchReport:
    """What the worker runs (tasks.dispatch_limits), in a thread of its own, while the chargers answer;
    ``timeout``: seconds to wait for each answer (the dispatch's default when None)."""
    pumps = [asyncio.ensure_future(c.settle(30)) for c in chargers]
    try:
        return await sync_to_async(smart_charging.dispatch_building, thread_sensitive=False)(schema, timeout=timeout)
    finally:
        for pump in pumps:
            pump.cancel()


def outcomes(report: smart_charging.DispatchReport, *pks: int) -> dict[int, str]:
    """The outcomes for these connectors (limits that earlier tests left in the building have theirs too)."""
    return {pk: status for pk, status in report.outcomes.items() if pk in pks}


def profiles_sent(charger: FakeCharger, since: int = 0) -> list[dict]:
    return [payload for action, payload in charger.received_calls[since:] if action == "SetChargingProfile"]


async def limit_row(schema: str, pk: int) -> ConnectorLimit:
    return await run_in_schema(schema, ConnectorLimit.objects.get, connector_id=pk)


async def quirks_of(schema: str, charge_point_id: str) -> dict:
    return await run_in_schema(schema, lambda: ChargePoint.objects.get(
        charge_point_id=charge_point_id).smart_charging_quirks)


async def open_alert(schema: str, kind: str, charge_point_id: str) -> Alert | None:
    return await run_in_schema(schema, lambda: Alert.objects.filter(
        kind=kind, charge_point_id=charge_point_id, resolved_at__isnull=True).first())


async def test_the_three_purposes_on_the_wire_then_a_change_under_1_a_is_not_sent(
        maple_schema, charger_id, dispatch_requests):
    memory = ProfileMemory(stack_level=5)
    charger = await connect(charger_id, memory)
    transaction_id = await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    assert maple_schema in dispatch_requests  # the connection and the boot asked for the profiles again
    dispatch_requests.clear()
    before = time.time()
    assert await set_limits(maple_schema, {pk1: "10.47"}) == 1
    assert dispatch_requests == [maple_schema]  # on commit

    report = await dispatch(maple_schema, charger)
    by_purpose = {(p["connectorId"], p["csChargingProfiles"]["chargingProfilePurpose"]): p["csChargingProfiles"]
                  for p in profiles_sent(charger)}
    assert set(by_purpose) == {(0, "ChargePointMaxProfile"), (1, "TxDefaultProfile"), (2, "TxDefaultProfile"),
                               (1, "TxProfile")}
    cap = by_purpose[(0, "ChargePointMaxProfile")]
    # Maple Court's supply: 200 A x 0.8 derate; no power limit.
    assert cap["chargingSchedule"] == {"chargingRateUnit": "A",
                                       "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 160}]}
    assert cap["stackLevel"] == 5 and cap["chargingProfileKind"] == "Absolute"
    # The safe default of a charger that takes 0 A: 0 A, a session waits for its first limit.
    safe = Decimal(0)
    for n in (1, 2):
        assert by_purpose[(n, "TxDefaultProfile")]["chargingSchedule"]["chargingSchedulePeriod"] == [
            {"startPeriod": 0, "limit": float(safe) if safe % 1 else int(safe)}]
    live = by_purpose[(1, "TxProfile")]
    assert live["transactionId"] == transaction_id and live["chargingProfileKind"] == "Relative"
    assert live["chargingProfileId"] == charging_profiles.profile_id("TxProfile", 1)
    periods = live["chargingSchedule"]["chargingSchedulePeriod"]
    assert periods[0] == {"startPeriod": 0, "limit": 10.4}  # rounded down, never up
    # The lease: after (seconds since the start, on the platform's clock) + 120 s, the floor (the default).
    assert Decimal(str(periods[1]["limit"])) == safe and LEASE_S <= periods[1]["startPeriod"] <= LEASE_S + 5
    assert "validFrom" not in live and "validTo" not in live and "startSchedule" not in live["chargingSchedule"]
    assert outcomes(report, pk1) == {pk1: "accepted"}
    row = await limit_row(maple_schema, pk1)
    assert row.applied_a == Decimal("10.4") and row.status == "accepted" and not row.dirty
    assert row.transaction_id == transaction_id and row.sent_unit == "A"
    # From the dispatch's start (the profile's lease counts from there too); a dispatch takes a moment.
    assert timedelta(seconds=LEASE_S - 30) < row.lease_until - timezone.now() <= timedelta(seconds=LEASE_S)
    # The reaction time: from limits_set to the profile handed to the charger's connection.
    assert len(report.latencies_s) == 1 and report.latencies_s[0] < time.time() - before
    assert memory.limit(1) == 10.4

    # 10.47 -> 11.3 A: less than 1 A from what the charger holds, nothing sent; 11.5 A is sent.
    sent = len(charger.received_calls)
    await set_limits(maple_schema, {pk1: "11.3"})
    assert outcomes(await dispatch(maple_schema, charger), pk1) == {pk1: "unchanged"}
    assert profiles_sent(charger, sent) == []
    assert (await limit_row(maple_schema, pk1)).status == "unchanged"
    await set_limits(maple_schema, {pk1: "11.5"})
    assert outcomes(await dispatch(maple_schema, charger), pk1) == {pk1: "accepted"}
    assert [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            for p in profiles_sent(charger, sent)] == [11.5]
    # A decrease is sent however small: 0.1 A kept above the plan is an overshoot of the node.
    sent = len(charger.received_calls)
    await set_limits(maple_schema, {pk1: "11.4"})
    assert outcomes(await dispatch(maple_schema, charger), pk1) == {pk1: "accepted"}
    assert [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            for p in profiles_sent(charger, sent)] == [11.4]
    await charger.transport.disconnect()


async def test_the_default_is_0_a_unless_the_charger_refuses_0_a_then_its_minimum(
        maple_schema, new_charger, dispatch_requests):
    """A session that starts before its first limit draws the TxDefaultProfile: 0 A where the charger takes it
    (paused until the balancer's limit); where it refuses 0 A, the connector's minimum, as before, and the
    refusal is remembered (the balancer then keeps that minimum free for its idle guns)."""
    takes_id, refuses_id = await sync_to_async(new_charger)(), await sync_to_async(new_charger)()
    takes, refuses = ProfileMemory(), ProfileMemory(rejects=("zero",))
    a, b = await connect(takes_id, takes), await connect(refuses_id, refuses)
    await dispatch(maple_schema, a, b)
    assert [takes.limit(n, "TxDefaultProfile") for n in (1, 2)] == [0, 0]
    assert not takes.refused and await quirks_of(maple_schema, takes_id) == {}
    # (Never below the 6 A minimum: a charger that refuses 0 A refuses what would pause it too.)
    assert refuses.refused and all(
        p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 0 for p in refuses.refused)
    assert [refuses.limit(n, "TxDefaultProfile") for n in (1, 2)] == [6, 6]
    assert await quirks_of(maple_schema, refuses_id) == {"zero_rejected": True}
    # Connected again: the default goes straight at the minimum, not one refusal more.
    await b.transport.disconnect()
    refused = len(refuses.refused)
    b = await connect(refuses_id, refuses)
    await dispatch(maple_schema, b)
    assert len(refuses.refused) == refused
    assert [refuses.limit(n, "TxDefaultProfile") for n in (1, 2)] == [6, 6]
    for charger in (a, b):
        await charger.transport.disconnect()


async def test_increases_wait_for_the_answers_to_the_decreases(maple_schema, new_charger, dispatch_requests):
    (a, a_id, a1, memory_a), (b, b_id, b1, _) = await two_charging(maple_schema, new_charger)

    # Move 8 A from A to B: A's decrease must be acknowledged before B hears of its increase.
    memory_a.hold = True
    sent_a, sent_b = len(a.received_calls), len(b.received_calls)
    await set_limits(maple_schema, {a1: "8", b1: "18"})
    pumps = [asyncio.ensure_future(c.settle(30)) for c in (a, b)]
    running = asyncio.ensure_future(sync_to_async(smart_charging.dispatch_building, thread_sensitive=False)(
        maple_schema))
    try:
        await async_wait_for(lambda: a.held, 10, what="A's decrease on the wire")
        assert [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
                for p in profiles_sent(a, sent_a)] == [8]
        await asyncio.sleep(1.5)  # the decrease unanswered: B's increase must not be sent meanwhile
        assert profiles_sent(b, sent_b) == [] and not running.done()
        await a.release({"status": "Accepted"})
        report = await asyncio.wait_for(running, 15)
    finally:
        for pump in pumps:
            pump.cancel()
    assert outcomes(report, a1, b1) == {a1: "accepted", b1: "accepted"}
    assert [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            for p in profiles_sent(b, sent_b)] == [18]
    assert report.sent.index((a_id, 1, "TxProfile")) < report.sent.index((b_id, 1, "TxProfile"))
    for charger in (a, b):
        await charger.transport.disconnect()


@pytest.mark.parametrize(("rejects", "rate_units", "wanted", "learnt", "held"), [
    ("TxProfile", "Current,Power", "10", {"tx_profile_rejected": True}, 10),
    ("W", "Power", "10", {"watts_rejected": True}, 10),
    ("fractional", "Current,Power", "10.8", {"integer_amps": True}, 10),
    ("zero", "Current,Power", "0", {"zero_rejected": True}, 6),
    ("stack", "Current,Power", "10", {"stack_level_zero": True}, 10),
])
async def test_a_refusal_is_worked_around_remembered_and_reused(
        maple_schema, charger_id, dispatch_requests, rejects, rate_units, wanted, learnt, held):
    memory = ProfileMemory(rejects=(rejects,), rate_units=rate_units)
    charger = await connect(charger_id, memory)
    await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: wanted})
    report = await dispatch(maple_schema, charger)
    assert outcomes(report, pk1) == {pk1: "accepted"}
    assert memory.refused, "the charger refused something first"
    assert await quirks_of(maple_schema, charger_id) == learnt  # exactly that quirk, nothing more
    row = await limit_row(maple_schema, pk1)
    assert row.applied_a == held
    purpose = "TxDefaultProfile" if rejects == "TxProfile" else "TxProfile"
    assert row.sent_purpose == purpose and memory.limit(1, purpose) in (held, held * 230)
    if rejects == "zero":
        # It cannot be paused by a profile: it may draw 6 A, and the managers are told.
        alert = await open_alert(maple_schema, Alert.Kind.CHARGING_LIMIT_FAILED, charger_id)
        assert alert is not None and "refuses 0 A" in alert.message

    # The next limit goes straight in the form that works: not one refusal more.
    refused, sent = len(memory.refused), len(charger.received_calls)
    await set_limits(maple_schema, {pk1: "20.5" if rejects != "zero" else "0"})
    if rejects == "zero":
        await set_limits(maple_schema, {pk1: "16"})
    assert outcomes(await dispatch(maple_schema, charger), pk1) == {pk1: "accepted"}
    assert len(memory.refused) == refused and len(profiles_sent(charger, sent)) == 1
    if rejects == "zero":
        assert await open_alert(maple_schema, Alert.Kind.CHARGING_LIMIT_FAILED, charger_id) is None
    await charger.transport.disconnect()


async def test_a_charger_that_refuses_everything_raises_an_alert(maple_schema, charger_id, dispatch_requests):
    memory = ProfileMemory(rejects=("everything",))
    charger = await connect(charger_id, memory)
    await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "12.5"})
    report = await dispatch(maple_schema, charger)
    assert outcomes(report, pk1) == {pk1: "rejected"} and charger_id in report.failed
    alert = await open_alert(maple_schema, Alert.Kind.CHARGING_LIMIT_FAILED, charger_id)
    assert alert is not None and alert.severity == "critical"
    assert "live limit on connector 1 rejected" in alert.message and "ChargePointMaxProfile" in alert.message
    row = await limit_row(maple_schema, pk1)
    assert row.applied_a is None and row.status == "rejected"
    assert await quirks_of(maple_schema, charger_id) == {}  # nothing learnt from what never worked
    await charger.transport.disconnect()


async def test_every_profile_is_sent_again_after_a_reconnect(maple_schema, charger_id, dispatch_requests):
    memory = ProfileMemory()
    charger = await connect(charger_id, memory)
    await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "14"})
    await dispatch(maple_schema, charger)
    assert [s for s in (await dispatch(maple_schema, charger)).sent if s[0] == charger_id] == []  # up to date
    await charger.transport.disconnect()

    # The platform restarted (or the charger did): a new connection holds nothing the platform knows of.
    dispatch_requests.clear()
    fresh = ProfileMemory()
    charger = await connect(charger_id, fresh)
    assert maple_schema in dispatch_requests
    report = await dispatch(maple_schema, charger)
    assert sorted(s for s in report.sent if s[0] == charger_id) == sorted([(charger_id, 0, "ChargePointMaxProfile"),
                                          (charger_id, 1, "TxDefaultProfile"), (charger_id, 2, "TxDefaultProfile"),
                                          (charger_id, 1, "TxProfile")])
    assert fresh.limit(1) == 14 and fresh.limit(0, "ChargePointMaxProfile") == 160
    assert outcomes(report, pk1) == {pk1: "accepted"}
    await charger.transport.disconnect()


def test_a_boot_is_one_statement_that_records_it_and_asks_for_the_profiles_again(
        maple_schema, charger_id, dispatch_requests):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.charging import services
    from apps.core.tenants import in_schema

    info = {"charge_point_vendor": "Acme", "charge_point_model": "Wallbox 44", "firmware_version": "2.0"}
    with in_schema(maple_schema):
        pk = ChargePoint.objects.get(charge_point_id=charger_id).pk
        ChargePoint.objects.filter(pk=pk).update(smart_charging_resend=False, smart_charging_retry_at=timezone.now())
        with CaptureQueriesContext(connection) as queries:
            accepted = services.charger_record_boot(charge_point_pk=pk, info=info, heartbeat_interval=300)
        cp = ChargePoint.objects.get(pk=pk)
        assert accepted
        assert len([q for q in queries.captured_queries if not q["sql"].startswith("SET ")]) == 1
        assert (cp.vendor, cp.model, cp.firmware_version, cp.heartbeat_interval_s) == ("Acme", "Wallbox 44", "2.0", 300)
        assert cp.last_boot_at is not None and cp.last_boot_at >= timezone.now() - timedelta(seconds=5)
        assert cp.smart_charging_resend and cp.smart_charging_retry_at is None
        assert dispatch_requests == [maple_schema]

        # A disabled charger: the boot is recorded, nothing is asked of the dispatch.
        dispatch_requests.clear()
        ChargePoint.objects.filter(pk=pk).update(enabled=False, smart_charging_resend=False, last_boot_at=None)
        assert not services.charger_record_boot(charge_point_pk=pk, info={**info, "firmware_version": "2.1"},
                                                heartbeat_interval=300)
        cp = ChargePoint.objects.get(pk=pk)
        assert (cp.firmware_version, cp.last_boot_at is not None, cp.smart_charging_resend) == ("2.1", True, False)
        assert dispatch_requests == []


async def test_a_charger_that_draws_above_its_limit_is_flagged_and_its_draw_reserved(
        maple_schema, charger_id, dispatch_requests):
    memory = ProfileMemory()
    charger = await connect(charger_id, memory)
    transaction_id = await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "10"})
    await dispatch(maple_schema, charger)

    async def draw(amps: str) -> None:
        await charger.call("MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": [{
            "timestamp": iso(timezone.now()), "sampledValue": [
                {"value": amps, "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                {"value": "0.0", "measurand": "Current.Import", "phase": "L2", "unit": "A"}]}]})

    await draw("16.4")
    await asyncio.sleep(1.1)
    await draw("16.2")
    over = await run_in_schema(maple_schema, limits_db.connectors_over_limit)
    assert over == []  # not for long enough yet
    later = timezone.now() + timedelta(seconds=61)
    over = await run_in_schema(maple_schema, limits_db.connectors_over_limit, now=later)
    assert [(o.connector_pk, o.limit_a, o.measured_a) for o in over] == [(pk1, Decimal(10), Decimal("16.2"))]
    assert await run_in_schema(maple_schema, limits_db.unmanaged_draws) == {pk1: Decimal("16.2")}
    alert = await open_alert(maple_schema, Alert.Kind.CHARGER_OVER_LIMIT, charger_id)
    assert alert is not None and alert.connector_number == 1 and "16.2 A" in alert.message
    state = (await run_in_schema(maple_schema, limits_db.connector_limits))[pk1]
    assert state.flagged and state.measured_a == Decimal("16.2") and state.applied_a == Decimal(10)

    await draw("9.8")  # back within its limit (+1 A tolerance)
    assert await run_in_schema(maple_schema, limits_db.connectors_over_limit, now=later) == []
    assert await run_in_schema(maple_schema, limits_db.unmanaged_draws) == {}
    assert await open_alert(maple_schema, Alert.Kind.CHARGER_OVER_LIMIT, charger_id) is None
    await charger.transport.disconnect()


async def test_a_charger_of_another_building_never_gets_this_buildings_limits(
        maple_schema, world, new_charger, dispatch_requests):
    maple_id = await sync_to_async(new_charger)()
    harbor_id = await sync_to_async(new_charger)(world.harbor_view)
    harbor_schema = world.harbor_view.schema_name
    maple_memory, harbor_memory = ProfileMemory(), ProfileMemory()
    maple, harbor = await connect(maple_id, maple_memory), await connect(harbor_id, harbor_memory)
    await start(maple, 1)
    await start(harbor, 1)
    await dispatch(harbor_schema, harbor)  # Harbor View's own profiles, sent when it connected
    sent = len(harbor.received_calls)
    pk = await connector_pk(maple_schema, maple_id, 1)
    await set_limits(maple_schema, {pk: "7"})
    report = await dispatch(maple_schema, maple, harbor)
    assert harbor_id not in {cp_id for cp_id, _, _ in report.sent} and (maple_id, 1, "TxProfile") in report.sent
    assert profiles_sent(harbor, sent) == [] and maple_memory.limit(1) == 7
    # A connector is named by its pk in the building's own schema: one that is not there is refused.
    missing = await run_in_schema(maple_schema, lambda: max(Connector.objects.values_list("pk", flat=True)) + 1000)
    with pytest.raises(ValueError, match=f"no connector {missing} in building {maple_schema}"):
        await set_limits(maple_schema, {missing: "6"})
    for charger in (maple, harbor):
        await charger.transport.disconnect()


async def two_charging(schema: str, new_charger) -> tuple[tuple, tuple]:
    """Two new chargers, each with a transaction on connector 1, limited to 16 and 10 A, both acknowledged:
    (charger, id, connector pk, its ProfileMemory) of each."""
    a_id, b_id = await sync_to_async(new_charger)(), await sync_to_async(new_charger)()
    memory_a, memory_b = ProfileMemory(), ProfileMemory()
    a, b = await connect(a_id, memory_a), await connect(b_id, memory_b)
    await start(a, 1)
    await start(b, 1)
    a1, b1 = await connector_pk(schema, a_id, 1), await connector_pk(schema, b_id, 1)
    await set_limits(schema, {a1: "16", b1: "10"})
    assert outcomes(await dispatch(schema, a, b), a1, b1) == {a1: "accepted", b1: "accepted"}
    return (a, a_id, a1, memory_a), (b, b_id, b1, memory_b)


async def held_then_sent_after(schema: str, slow: tuple, other: tuple, while_held=None) -> None:
    """The limits are set: ``slow`` (charger, id, connector pk, its ProfileMemory) does not answer its decrease in
    time, so ``other``'s (charger, id, connector pk) profile is held; once ``slow`` answers again, the next
    dispatch sends both, ``slow``'s first."""
    a, a_id, a1, memory_a = slow
    b, b_id, b1 = other
    memory_a.hold = True  # A never answers in time
    sent_b = len(b.received_calls)
    report = await dispatch(schema, a, b, timeout=1)
    assert outcomes(report, a1, b1) == {a1: "timeout", b1: "held"}
    assert profiles_sent(b, sent_b) == []
    if while_held is not None:
        await while_held()
    memory_a.hold = False
    report = await dispatch(schema, a, b)
    assert outcomes(report, a1, b1) == {a1: "accepted", b1: "accepted"}
    assert report.sent.index((a_id, 1, "TxProfile")) < report.sent.index((b_id, 1, "TxProfile"))


async def test_a_new_session_starts_only_after_the_decreases_are_acknowledged(maple_schema, new_charger,
                                                                              dispatch_requests):
    """A transaction with no limit sent yet charges under its TxDefaultProfile (0 A here): its first TxProfile
    is an increase, held while another charger's decrease goes unanswered."""
    a_id, b_id = await sync_to_async(new_charger)(), await sync_to_async(new_charger)()
    memory_a, memory_b = ProfileMemory(), ProfileMemory()
    a, b = await connect(a_id, memory_a), await connect(b_id, memory_b)
    await start(a, 1)
    a1, b1 = await connector_pk(maple_schema, a_id, 1), await connector_pk(maple_schema, b_id, 1)
    await set_limits(maple_schema, {a1: "16"})
    await dispatch(maple_schema, a, b)  # A's limit, and both chargers' static profiles
    assert memory_b.limit(1, "TxDefaultProfile") == 0
    await start(b, 1)

    await set_limits(maple_schema, {a1: "8", b1: "8"})
    await held_then_sent_after(maple_schema, (a, a_id, a1, memory_a), (b, b_id, b1))
    assert memory_a.limit(1) == 8 and memory_b.limit(1) == 8
    for charger in (a, b):
        await charger.transport.disconnect()


async def test_increases_are_held_while_a_decrease_goes_unanswered(maple_schema, new_charger, dispatch_requests):
    (a, a_id, a1, memory_a), (b, b_id, b1, memory_b) = await two_charging(maple_schema, new_charger)

    await set_limits(maple_schema, {a1: "8", b1: "18"})

    async def while_held() -> None:
        row_a, row_b = await limit_row(maple_schema, a1), await limit_row(maple_schema, b1)
        assert row_a.applied_a is None and row_a.dirty  # it may or may not hold 8 A: sent again next time
        assert row_b.applied_a == 10 and row_b.dirty and "held back" in row_b.note

    # A answers again: the next dispatch sends the decrease again and, once it is acknowledged, the increase.
    await held_then_sent_after(maple_schema, (a, a_id, a1, memory_a), (b, b_id, b1), while_held)
    assert memory_a.limit(1) == 8 and memory_b.limit(1) == 18
    for charger in (a, b):
        await charger.transport.disconnect()


async def test_a_dispatch_that_fails_lets_go_of_the_building_at_once(maple_schema, charger_id, dispatch_requests):
    """Held after a failure, the claim would keep every dispatch of the building waiting until it expires (60 s):
    it is let go at once, with the request kept for the next dispatch."""
    from apps.charging.models import LimitDispatch

    memory = ProfileMemory()
    charger = await connect(charger_id, memory)
    await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "10"})

    async def interrupted(*args, **kwargs):
        # What a worker's time limit or shutdown does to a round in the middle of a call.
        raise asyncio.CancelledError("the round was interrupted")

    with pytest.raises(asyncio.CancelledError):
        await sync_to_async(smart_charging.dispatch_building, thread_sensitive=False)(maple_schema, interrupted)
    row = await run_in_schema(maple_schema, lambda: LimitDispatch.objects.get(pk=1))
    assert row.claimed_until is None and row.dirty
    report = await dispatch(maple_schema, charger)  # at once, not "busy"
    assert not report.busy and outcomes(report, pk1) == {pk1: "accepted"} and memory.limit(1) == 10
    await charger.transport.disconnect()


def test_a_busy_dispatch_does_not_hold_back_the_next_request(db, maple_schema):
    """A dispatch that finds another worker holding the building's dispatch leaves the request to it and comes
    back once after a moment (in case the holder died); the next plan's request must still queue a dispatch at
    once, which reaches the holder, not wait for that retry."""
    from apps.charging.models import LimitDispatch
    from apps.core.tenants import in_condominium
    from apps.ocpp import tasks
    from hoa_charging.celery import app

    live.unmark(f"dispatch-queued:{maple_schema}")
    with in_condominium(maple_schema):
        assert limits_db.dispatch_claim(hold=timedelta(seconds=60))  # another worker, in the middle of a round
        LimitDispatch.objects.filter(pk=1).update(dirty=False)
    try:
        assert tasks.dispatch_limits(maple_schema)["busy"]
        with in_condominium(maple_schema):
            assert LimitDispatch.objects.get(pk=1).dirty  # the holder dispatches again before letting go
        assert live.mark_once(f"dispatch-queued:{maple_schema}", 60)  # and the next request queues at once
    finally:
        live.unmark(f"dispatch-queued:{maple_schema}")
        app.control.purge()  # the retry, which no worker of this test runs


def test_a_dispatch_records_its_chargers_in_a_few_queries(world, new_charger):
    """After a round to many chargers, most of them end alike: one UPDATE per set of identical values and one
    query resolving the alerts of those without a failure, not three queries per charger. A failure still
    raises its charger's alert; another building's charger of the same pk range is never touched."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.alerts.services import alert_raise
    from apps.core.tenants import in_schema

    ids = [new_charger() for _ in range(12)]
    other = new_charger(world.harbor_view)
    schema = world.maple.schema_name
    with in_schema(schema):
        pks = dict(ChargePoint.objects.filter(charge_point_id__in=ids).values_list("charge_point_id", "pk"))
        alert_raise(kind=Alert.Kind.CHARGING_LIMIT_FAILED, charge_point_id=ids[0], message="earlier failure")
        retry = timezone.now() + timedelta(minutes=2)
        records = [limits_db.ChargerRecord(charge_point_pk=pks[cp_id], charge_point_id=cp_id,
                                           quirks={"tx_profile_rejected": True} if n == 1 else {},
                                           static_ok=True, retry_at=retry if n == 2 else None,
                                           failed="TxProfile on connector 1 Rejected" if n == 3 else "")
                   for n, cp_id in enumerate(ids)]
        with CaptureQueriesContext(connection) as queries:
            limits_db.chargers_record_profiles(records)
        statements = [q["sql"] for q in queries.captured_queries if not q["sql"].startswith("SET search_path")]
        # three groups of values, the alerts of the other eleven resolved at once; the one alert raised (five,
        # in its savepoint)
        assert len([sql for sql in statements if "charging_chargepoint" in sql]) == 3, statements
        assert len(statements) <= 3 + 1 + 5, statements
        rows = {cp.charge_point_id: cp for cp in ChargePoint.objects.filter(charge_point_id__in=ids)}
        assert all(rows[cp_id].static_profiles_at is not None and not rows[cp_id].smart_charging_resend
                   for cp_id in ids)
        assert rows[ids[1]].smart_charging_quirks == {"tx_profile_rejected": True}
        assert rows[ids[2]].smart_charging_retry_at == retry and rows[ids[4]].smart_charging_retry_at is None
        open_alerts = set(Alert.objects.filter(kind=Alert.Kind.CHARGING_LIMIT_FAILED, resolved_at__isnull=True,
                                               charge_point_id__in=ids).values_list("charge_point_id", flat=True))
        assert open_alerts == {ids[3]}
    with in_schema(world.harbor_view.schema_name):
        assert ChargePoint.objects.get(charge_point_id=other).static_profiles_at is None


async def test_a_worker_keeps_its_rounds_loop_and_layer_until_an_answer_is_given_up_on(
        maple_schema, charger_id, dispatch_requests):
    """A worker's rounds share one event loop and one channel layer (their Redis connections are not opened
    again every round); a round that gave up on an answer lets both go, since the reply may still come into
    the layer's buffer, and the next round gets new ones that work."""
    from concurrent.futures import ThreadPoolExecutor

    worker = ThreadPoolExecutor(max_workers=1)  # one worker process's thread

    async def in_worker(function, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(worker, lambda: function(*args, **kwargs))

    def kept():
        return getattr(smart_charging._kept, "round_loop", None)

    async def dispatch_in_worker(timeout: float | None = None) -> smart_charging.DispatchReport:
        pump = asyncio.ensure_future(charger.settle(30))
        try:
            return await in_worker(smart_charging.dispatch_building, maple_schema, timeout=timeout)
        finally:
            pump.cancel()

    memory = ProfileMemory()
    charger = await connect(charger_id, memory)
    try:
        await start(charger, 1)
        pk1 = await connector_pk(maple_schema, charger_id, 1)
        for n, amps in enumerate(("14", "9", "12")):
            await set_limits(maple_schema, {pk1: amps})
            assert outcomes(await dispatch_in_worker(), pk1) == {pk1: "accepted"}
            assert memory.limit(1) == int(amps)
            if n == 0:
                first = await in_worker(kept)
                assert first is not None and not first.loop.is_closed()
            else:
                assert await in_worker(kept) is first  # the same loop and layer, round after round

        memory.hold = True  # it does not answer in time: given up on
        await set_limits(maple_schema, {pk1: "8"})
        assert outcomes(await dispatch_in_worker(timeout=1), pk1) == {pk1: "timeout"}
        assert await in_worker(kept) is None and first.loop.is_closed()

        memory.hold = False
        assert outcomes(await dispatch_in_worker(), pk1) == {pk1: "accepted"}
        assert memory.limit(1) == 8
        renewed = await in_worker(kept)
        assert renewed is not None and renewed is not first and not renewed.loop.is_closed()
    finally:
        await charger.transport.disconnect()
        worker.shutdown()


def test_a_dispatch_records_its_connectors_answers_in_two_queries(world, new_charger, dispatch_requests):
    """However many connectors a round touched: their rows read and locked in one query, every outcome written
    in one UPDATE (it was one or two per connector). Each outcome still writes what it should: an answered
    profile what the charger holds, a silence or a refusal forgets it, a quiet outcome only its status; a final
    one ends the wish unless the balancer asked again after the plan was read. Another building's rows with the
    same connector pks are never touched."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.core.tenants import in_schema

    ids = [new_charger() for _ in range(8)]
    other = new_charger(world.harbor_view)
    schema = world.maple.schema_name
    with in_schema(world.harbor_view.schema_name):
        other_pks = list(Connector.objects.filter(charge_point__charge_point_id=other).values_list("pk", flat=True))
        limits_set(limits={pk: Limit(Decimal(9)) for pk in other_pks}, lease_s=LEASE_S, reason="other building")
    with in_schema(schema):
        pks = list(Connector.objects.filter(charge_point__charge_point_id__in=ids).order_by("pk")
                   .values_list("pk", flat=True))
        limits_set(limits={pk: Limit(Decimal(10)) for pk in pks}, lease_s=LEASE_S, reason="start")
        planned_at = timezone.now()
        late = pks[1]  # the balancer asks again after the plan was read: it stays wanted
        limits_set(limits={late: Limit(Decimal(7))}, lease_s=LEASE_S, reason="a rise")
        sent_at = planned_at + timedelta(milliseconds=5)
        lease_until = sent_at + timedelta(seconds=LEASE_S)

        def sent(pk: int, status: str) -> limits_db.LimitOutcome:
            return limits_db.LimitOutcome(
                connector_pk=pk, status=status, note=f"{status} {pk}", sent={"connectorId": pk}, sent_a=Decimal(10),
                sent_unit="A", sent_purpose="TxProfile", sent_at=sent_at,
                applied_a=Decimal(10) if status == Status.ACCEPTED else None, transaction_id=pk * 10,
                lease_until=lease_until)

        Status = ConnectorLimit.Status
        accepted, timeout, rejected = pks[0:6], pks[6:8], pks[8:10]
        unchanged, not_connected = pks[10:14], pks[14:16]
        outcomes = ([sent(pk, Status.ACCEPTED) for pk in accepted] + [sent(pk, Status.TIMEOUT) for pk in timeout]
                    + [sent(pk, Status.REJECTED) for pk in rejected]
                    + [limits_db.LimitOutcome(connector_pk=pk, status=Status.UNCHANGED, note="same")
                       for pk in unchanged]
                    + [limits_db.LimitOutcome(connector_pk=pk, status=Status.NOT_CONNECTED, note="offline")
                       for pk in not_connected])
        # A timed-out connector held an earlier limit: its lease (when the doubt ends) is kept.
        ConnectorLimit.objects.filter(connector_id__in=timeout + rejected).update(
            applied_a=Decimal(12), transaction_id=1, lease_until=lease_until)
        with CaptureQueriesContext(connection) as queries:
            limits_db.limit_record(reversed(outcomes), planned_at=planned_at)
        on_limits = [q["sql"] for q in queries.captured_queries if "charging_connectorlimit" in q["sql"]]
        assert len(on_limits) == 2, on_limits
        rows = {row.connector_id: row for row in ConnectorLimit.objects.filter(connector_id__in=pks)}
    for pk in accepted:
        row = rows[pk]
        assert (row.status, row.note, row.applied_a, row.transaction_id, row.lease_until, row.sent_at) == (
            Status.ACCEPTED, f"accepted {pk}", Decimal(10), pk * 10, lease_until, sent_at)
        assert row.sent_profile == {"connectorId": pk} and row.acknowledged_at is not None
        assert row.dirty == (pk == late)
    for pk in timeout:  # no answer: still wanted, what it holds unknown, its lease kept
        assert (rows[pk].status, rows[pk].applied_a, rows[pk].transaction_id, rows[pk].lease_until, rows[pk].dirty
                ) == (Status.TIMEOUT, None, None, lease_until, True)
        assert rows[pk].sent_profile == {"connectorId": pk}
    for pk in rejected:  # refused for good: the wish ends, and nothing is known to be held
        assert (rows[pk].status, rows[pk].applied_a, rows[pk].lease_until, rows[pk].dirty) == (
            Status.REJECTED, None, None, False)
    for pk in unchanged:
        assert (rows[pk].status, rows[pk].note, rows[pk].dirty, rows[pk].sent_profile) == (
            Status.UNCHANGED, "same", False, {})
    for pk in not_connected:  # not final: still wanted
        assert (rows[pk].status, rows[pk].note, rows[pk].dirty, rows[pk].sent_at) == (
            Status.NOT_CONNECTED, "offline", True, None)
    with in_schema(world.harbor_view.schema_name):
        assert all((row.status, row.dirty, row.sent_at) == (Status.PENDING, True, None)
                   for row in ConnectorLimit.objects.filter(connector_id__in=other_pks))


async def test_reaction_time_through_a_real_celery_worker(maple_schema, charger_id, test_database_url, settings):
    """From limits_set to the SetChargingProfile frame at the charger, through the broker, a Celery worker,
    the channel layer and the consumer: the 95th percentile of 20 changes stays under the 1 s target."""
    # The test sets the limits itself: no balancer run (here or in the worker) may change them.
    settings.LOADBALANCING_ENABLED = False
    # Only this charger is dispatched to: a charger an earlier test left "connected" in the live state (its
    # socket gone) would hold a round for its answer's time-out (5 s), which is not what this test measures
    # (a change once delayed 7 s so, in full runs); and a dispatch an earlier test queued left its "one is
    # waiting" mark, which would hold this building's next dispatch back until it expires.
    await sync_to_async(quiet_building)(maple_schema, charger_id)
    worker = CeleryWorker(test_database_url, env={"LOADBALANCING_ENABLED": "0"}).start()
    memory = ProfileMemory()
    charger = None
    pump = None
    try:
        charger = await connect(charger_id, memory)
        await start(charger, 1)
        pk1 = await connector_pk(maple_schema, charger_id, 1)
        pump = asyncio.ensure_future(charger.settle(300))
        latencies = []
        for n in range(21):
            amps = 8 + (n % 2) * 8  # 8 A, 16 A, 8 A...
            seen = len(charger.received_calls)
            before = time.time()
            await set_limits(maple_schema, {pk1: str(amps)})

            def arrived(seen=seen, amps=amps):
                return next((at for (action, payload), at in zip(charger.received_calls[seen:],
                                                                 charger.received_at[seen:], strict=True)
                             if action == "SetChargingProfile"
                             and payload["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"
                             and payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0][
                                 "limit"] == amps), None)

            try:
                at = await async_wait_for(arrived, 90 if n == 0 else 30, interval=0.005,
                                          what=f"the {amps} A profile on the wire")
            except AssertionError:
                row = await limit_row(maple_schema, pk1)
                raise AssertionError(f"{amps} A not sent: {row.status} {row.note!r} dirty={row.dirty}") from None
            if n:  # the first one waits for the worker to start and to drain older requests
                latencies.append(at - before)
        p95 = statistics.quantiles(latencies, n=20)[-1]
        print(f"limits_set -> SetChargingProfile at the charger: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms ({len(latencies)} changes)")
        # The 1 s target is measured by the benchmarks on a quiet machine (docs/benchmarks.md); here, with the
        # whole suite running beside it, only that every change arrives promptly.
        assert p95 < 5.0
        # The worker records what it sent once the answers are in.
        row = await async_wait_for(lambda: sync_to_async(_recorded)(maple_schema, pk1), 10)
        assert row.applied_a == 8 and row.sent_at >= row.requested_at
        state = (await run_in_schema(maple_schema, limits_db.connector_limits, connector_pks=[pk1]))[pk1]
        assert 0 <= state.dispatch_latency_s < 5.0  # recorded, and as prompt as the p95 above
        assert state.dispatch_latency_s in await run_in_schema(maple_schema, limits_db.dispatch_latencies)
    finally:
        if pump is not None:
            pump.cancel()
        if charger is not None:
            await charger.transport.disconnect()
        worker.stop()


async def test_a_lease_is_renewed_at_its_buildings_renewal_time_by_a_dispatch_queued_for_it(
        maple_schema, charger_id, test_database_url, settings):
    """The catch-up queues each building's next lease renewal for its own time: the charger gets its limit again
    just after the building's renewal time (leases.py), through a real worker, not at whichever periodic run
    comes next; a renewal time is queued once however many catch-ups see it coming; a building holding no
    lease gets none queued."""
    from apps.charging.smart_charging import renewal_next
    from apps.ocpp import tasks
    from hoa_charging.celery import app

    settings.LOADBALANCING_ENABLED = False  # the test sets the limits itself
    await sync_to_async(quiet_building)(maple_schema, charger_id)
    lease_s = 20  # a renewal time every 10 s
    assert await run_in_schema(maple_schema, renewal_next, within=timedelta(minutes=10)) is None  # no lease held
    worker = CeleryWorker(test_database_url, env={"LOADBALANCING_ENABLED": "0"}).start()
    memory = ProfileMemory()
    charger = await connect(charger_id, memory)
    pump = asyncio.ensure_future(charger.settle(300))
    try:
        await start(charger, 1)
        pk1 = await connector_pk(maple_schema, charger_id, 1)
        await set_limits(maple_schema, {pk1: "12"}, lease_s=lease_s)

        def tx_profiles(since: int) -> list[float]:
            return [at for (action, payload), at in zip(charger.received_calls[since:], charger.received_at[since:],
                                                        strict=True)
                    if action == "SetChargingProfile"
                    and payload["csChargingProfiles"]["chargingProfilePurpose"] == "TxProfile"]

        await async_wait_for(lambda: tx_profiles(0) or None, 90, what="the first 12 A TxProfile")

        async def accepted() -> bool:
            return (await limit_row(maple_schema, pk1)).status == ConnectorLimit.Status.ACCEPTED

        await async_wait_for(accepted, 30, what="its answer recorded")
        # Far from its next renewal time: the one after is queued (a lease just renewed is not due before it).
        now = timezone.now()
        renewal = await run_in_schema(maple_schema, renewal_next, within=timedelta(seconds=60), now=now)
        assert renewal is not None and now < renewal <= now + timedelta(seconds=lease_s / 2)
        assert renewal == leases.next_renewal(maple_schema, lease_s, now)
        assert await run_in_schema(maple_schema, renewal_next, within=renewal - now - timedelta(milliseconds=1),
                                   now=now) is None
        seen = len(charger.received_calls)
        assert await sync_to_async(tasks.queue_renewal)(maple_schema, renewal)
        assert not await sync_to_async(tasks.queue_renewal)(maple_schema, renewal)  # once, however often seen
        # (A renewal time that fell between the first profile and now makes the catch-up renew at once too.)
        at = await async_wait_for(lambda: next((t for t in tx_profiles(seen) if t >= renewal.timestamp() - 0.05),
                                               None), lease_s, interval=0.01, what="the lease renewed")
        assert renewal.timestamp() <= at <= renewal.timestamp() + 3, (at - renewal.timestamp())
        assert memory.limit(1) == 12

        async def renewed() -> bool:  # its answer recorded (a worker stopped in the middle of a round would not)
            row = await limit_row(maple_schema, pk1)
            return row.status == ConnectorLimit.Status.ACCEPTED and row.acknowledged_at >= renewal

        await async_wait_for(renewed, 30, what="the renewal's answer recorded")

        # The catch-up queues the next one (every building's: the worker is stopped first, the broker purged
        # after): its renewal time is then marked as queued.
        worker.stop()
        now = timezone.now()
        following = await run_in_schema(maple_schema, renewal_next, within=tasks.RENEWAL_AHEAD, now=now)
        assert following is not None and following > renewal
        await sync_to_async(tasks.dispatch_all_limits)()
        assert not await sync_to_async(tasks.queue_renewal)(maple_schema, following)
    finally:
        pump.cancel()
        await charger.transport.disconnect()
        worker.stop()
        app.control.purge()  # the other buildings' renewals the catch-up queued


def _recorded(schema: str, pk: int) -> ConnectorLimit | None:
    from apps.core.tenants import in_schema

    with in_schema(schema):
        row = ConnectorLimit.objects.get(connector_id=pk)
    return row if row.status == "accepted" and not row.dirty else None


async def test_a_charger_refusing_tx_profiles_gets_its_safe_default_back_after_a_session(
        maple_schema, charger_id, dispatch_requests):
    """Its live limit sits in the connector's TxDefaultProfile, which outlives the session: after the stop the
    default goes back to the safe one (0 A), or the next car would start at the last car's limit."""
    memory = ProfileMemory(rejects=("TxProfile",))
    charger = await connect(charger_id, memory)
    first = await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "16"})
    await dispatch(maple_schema, charger)
    assert memory.limit(1, "TxDefaultProfile") == 16
    dispatch_requests.clear()
    await charger.call("StopTransaction", {"transactionId": first, "meterStop": 100,
                                           "timestamp": iso(timezone.now())})
    assert maple_schema in dispatch_requests  # the stop asked for a dispatch
    await dispatch(maple_schema, charger)
    assert memory.limit(1, "TxDefaultProfile") == 0
    await charger.transport.disconnect()


async def test_on_a_charger_refusing_tx_profiles_a_new_session_waits_for_the_decreases_too(
        maple_schema, new_charger, dispatch_requests):
    """Its live limit sits in the connector's TxDefaultProfile; once the safe default went back there after the
    last session (acknowledged), a new session starts under it, so its first limit is an increase too: held
    while another charger's decrease goes unanswered, sent once it is acknowledged."""
    a_id, b_id = await sync_to_async(new_charger)(), await sync_to_async(new_charger)()
    memory_a, memory_b = ProfileMemory(rejects=("TxProfile",)), ProfileMemory()
    a, b = await connect(a_id, memory_a), await connect(b_id, memory_b)
    first = await start(a, 1)
    await start(b, 1)
    a1, b1 = await connector_pk(maple_schema, a_id, 1), await connector_pk(maple_schema, b_id, 1)
    await set_limits(maple_schema, {a1: "16", b1: "16"})
    await dispatch(maple_schema, a, b)
    assert memory_a.limit(1, "TxDefaultProfile") == 16 and memory_b.limit(1) == 16
    await a.call("StopTransaction", {"transactionId": first, "meterStop": 100, "timestamp": iso(timezone.now())})
    await dispatch(maple_schema, a, b)
    assert memory_a.limit(1, "TxDefaultProfile") == 0  # the safe default is back, and acknowledged
    await start(a, 1)

    await set_limits(maple_schema, {a1: "8", b1: "8"})
    memory_b.hold = True  # B never answers its decrease in time
    sent_a = len(a.received_calls)
    report = await dispatch(maple_schema, a, b, timeout=1)
    assert outcomes(report, a1, b1) == {a1: "held", b1: "timeout"}
    assert profiles_sent(a, sent_a) == [] and memory_a.limit(1, "TxDefaultProfile") == 0
    memory_b.hold = False
    report = await dispatch(maple_schema, a, b)
    assert outcomes(report, a1, b1) == {a1: "accepted", b1: "accepted"}
    assert report.sent.index((b_id, 1, "TxProfile")) < report.sent.index((a_id, 1, "TxDefaultProfile"))
    assert memory_a.limit(1, "TxDefaultProfile") == 8 and memory_b.limit(1) == 8
    for charger in (a, b):
        await charger.transport.disconnect()


async def test_a_limit_asked_for_an_earlier_session_is_not_applied_to_the_next(
        maple_schema, charger_id, dispatch_requests):
    memory = ProfileMemory()
    charger = await connect(charger_id, memory)
    first = await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "24"})
    await dispatch(maple_schema, charger)
    await charger.call("StopTransaction", {"transactionId": first, "meterStop": 100,
                                           "timestamp": iso(timezone.now())})
    await asyncio.sleep(0.01)
    second = await start(charger, 1)
    sent = len(charger.received_calls)
    report = await dispatch(maple_schema, charger)
    assert outcomes(report, pk1) == {pk1: "no-transaction"} and profiles_sent(charger, sent) == []
    # The balancer asks again for the new session (the same 24 A): now it is sent, for that transaction.
    await set_limits(maple_schema, {pk1: "24"})
    report = await dispatch(maple_schema, charger)
    assert outcomes(report, pk1) == {pk1: "accepted"}
    assert [p["csChargingProfiles"]["transactionId"] for p in profiles_sent(charger, sent)] == [second]
    await charger.transport.disconnect()


async def test_a_lease_is_renewed_once_the_buildings_renewal_time_passed_and_not_before(
        maple_schema, charger_id, dispatch_requests):
    """Each building renews its leases at renewal times of its own (apps/charging/leases.py), so buildings whose
    limits were acknowledged together do not all renew in the same cycle. A lease that began before the
    building's latest renewal time is sent again with the same limit, though more than half of it is left; one
    that began after it is not."""
    period = timedelta(seconds=LEASE_S / 2)
    latest = leases.latest_renewal(maple_schema, LEASE_S, timezone.now())
    if timezone.now() - latest > period - timedelta(seconds=30):  # leave the test room before the next one
        await asyncio.sleep((latest + period - timezone.now()).total_seconds() + 0.1)
        latest += period
    charger = await connect(charger_id, ProfileMemory())
    await start(charger, 1)
    pk1 = await connector_pk(maple_schema, charger_id, 1)
    await set_limits(maple_schema, {pk1: "14"})
    assert outcomes(await dispatch(maple_schema, charger), pk1) == {pk1: "accepted"}

    # Acknowledged after the latest renewal time: up to date, nothing sent.
    sent = len(charger.received_calls)
    assert outcomes(await dispatch(maple_schema, charger), pk1) == {pk1: "unchanged"}
    assert profiles_sent(charger, sent) == []

    # Acknowledged a second before it: renewed now, with more than half the lease left (the old rule's due).
    began = latest - timedelta(seconds=1)
    await run_in_schema(maple_schema, lambda: ConnectorLimit.objects.filter(connector_id=pk1).update(
        lease_until=began + timedelta(seconds=LEASE_S)))
    assert (began + timedelta(seconds=LEASE_S)) - timezone.now() > timedelta(seconds=LEASE_S / 2)
    report = await dispatch(maple_schema, charger)
    assert outcomes(report, pk1) == {pk1: "accepted"}
    assert [p["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]
            for p in profiles_sent(charger, sent)] == [14]
    assert (await limit_row(maple_schema, pk1)).lease_until > timezone.now() + timedelta(seconds=LEASE_S - 10)
    await charger.transport.disconnect()


def test_the_catch_up_dispatches_a_building_only_when_it_has_something_to_send(db, world):
    """Every half minute the catch-up looks at every building; it queues a dispatch (which reads the whole plan)
    only for a limit not delivered yet, a request left pending, static profiles to send again or a lease due
    at the building's renewal time. Another building's due lease is not this one's."""
    from apps.charging.models import LimitDispatch
    from apps.core.tenants import in_schema
    from tests import factories

    def limit_row(condo, connector_number: int = 1, **fields) -> ConnectorLimit:
        cp_id = f"W-{uuid.uuid4().hex[:10].upper()}"
        factories.charger(condo, cp_id)
        connector = Connector.objects.get(charge_point__charge_point_id=cp_id, connector_id=connector_number)
        return ConnectorLimit.objects.create(connector=connector, desired_a=Decimal(10), applied_a=Decimal(10),
                                             requested_at=timezone.now(), **fields)

    schema, lease_s = world.maple.schema_name, 120
    now = timezone.now()
    with in_schema(world.harbor_view.schema_name):  # inside this test's transaction, rolled back after it
        latest = leases.latest_renewal(world.harbor_view.schema_name, lease_s, now)
        limit_row(world.harbor_view, status=ConnectorLimit.Status.ACCEPTED, dirty=False, lease_s=lease_s,
                  lease_until=latest - timedelta(seconds=1) + timedelta(seconds=lease_s))
        assert limits_db.dispatch_wanted(now=now)
    with in_schema(schema):
        ConnectorLimit.objects.all().delete()  # what earlier tests left in the building
        LimitDispatch.objects.all().delete()
        ChargePoint.objects.update(smart_charging_resend=False)
        assert not limits_db.dispatch_wanted(now=now)

        latest = leases.latest_renewal(schema, lease_s, now)
        row = limit_row(world.maple, status=ConnectorLimit.Status.ACCEPTED, dirty=False, lease_s=lease_s,
                        lease_until=latest + timedelta(seconds=1 + lease_s))
        ChargePoint.objects.update(smart_charging_resend=False)
        rows = ConnectorLimit.objects.filter(pk=row.pk)
        assert not limits_db.dispatch_wanted(now=now)  # acknowledged after the latest renewal time
        rows.update(lease_until=latest - timedelta(seconds=1) + timedelta(seconds=lease_s))
        assert limits_db.dispatch_wanted(now=now)  # acknowledged before it: due
        rows.update(status=ConnectorLimit.Status.NO_TRANSACTION)
        assert not limits_db.dispatch_wanted(now=now)  # its session ended: nothing held, nothing to renew
        rows.update(dirty=True)
        assert limits_db.dispatch_wanted(now=now)  # a new limit not delivered yet
        rows.update(dirty=False)
        ChargePoint.objects.filter(pk=row.connector.charge_point_id).update(smart_charging_resend=True)
        assert limits_db.dispatch_wanted(now=now)  # it reconnected: its static profiles again
        ChargePoint.objects.update(smart_charging_resend=False)
        LimitDispatch.objects.create(pk=1, dirty=True)
        assert limits_db.dispatch_wanted(now=now)  # a request whose task was lost


async def _silent_since(charge_point_id: str, seconds_ago: float) -> None:
    """The live state as a connection leaves it when its charger has sent nothing for this long."""
    await live.update(charge_point_id, {"last_seen": str(int(time.time() - seconds_ago))})


async def test_a_charger_silent_too_long_is_given_up_on_after_a_second_while_others_talk(
        maple_schema, new_charger, dispatch_requests, settings):
    """A socket that died without closing holds a round (and a newer plan waiting for it) for the whole answer
    timeout; one whose charger has sent nothing for longer than it should have, while the building's other
    chargers talk, is given up on after SILENT_GIVE_UP_S. A charger heard from lately is waited for as before,
    and so is a silent one when every charger of the building is silent (a stalled process, not a dead socket)."""
    settings.OCPP_HEARTBEAT_INTERVAL = 60
    (a, a_id, a1, memory_a), (b, b_id, b1, _) = await two_charging(maple_schema, new_charger)
    memory_a.hold = True  # A answers nothing from here on

    async def timed(limits: dict[int, str], timeout: float) -> tuple[float, smart_charging.DispatchReport]:
        await set_limits(maple_schema, limits)
        started = time.monotonic()
        report = await dispatch(maple_schema, a, b, timeout=timeout)
        return time.monotonic() - started, report

    # Heard from lately (it just connected): waited for, the whole timeout.
    elapsed, report = await timed({a1: "8", b1: "12"}, 2.5)
    assert outcomes(report, a1, b1) == {a1: "timeout", b1: "held"}
    assert elapsed >= 2.5
    # Silent for 10 minutes (bound: 60 s heartbeat + 10 s) while B talks: given up on after a second.
    await _silent_since(a_id, 600)
    elapsed, report = await timed({a1: "7", b1: "13"}, 4)
    assert outcomes(report, a1, b1) == {a1: "timeout", b1: "held"}
    assert elapsed < 1 + 1.5, elapsed
    cp = await run_in_schema(maple_schema, ChargePoint.objects.get, charge_point_id=a_id)
    assert "given up after 1 s" in cp.smart_charging_note
    # Every charger silent: a stalled process, not a dead socket: waited for, the whole timeout.
    await _silent_since(a_id, 600)
    await _silent_since(b_id, 600)
    await run_in_schema(maple_schema, lambda: ChargePoint.objects.filter(charge_point_id=a_id).update(
        smart_charging_retry_at=None))  # as after the two minutes of rest a second silence earns
    elapsed, report = await timed({a1: "6", b1: "14"}, 2.5)
    assert outcomes(report, a1) == {a1: "timeout"}
    assert elapsed >= 2.5
    for charger in (a, b):
        await charger.transport.disconnect()


def test_how_long_a_working_charger_may_stay_silent(settings):
    from dataclasses import replace as copy_with

    settings.OCPP_HEARTBEAT_INTERVAL = 300
    connector = limits_db.ConnectorPlan(
        pk=1, number=1, phases=1, voltage_v=230, dc=False, min_current_a=Decimal(6), max_current_a=None,
        connectors_on_circuit=1, desired_a=None, floor_a=None, lease_s=None, requested_at=None, dirty=False,
        applied_a=None, lease_until=None, transaction_id=None, transaction_received_at=None)
    plan = limits_db.ChargerPlan(
        pk=1, charge_point_id="X", configuration={"MeterValueSampleInterval": {"value": "15"}}, quirks={},
        resend=False, retry_at=None, circuit_current_a=Decimal(32), circuit_power_w=None, circuit_voltage_v=230,
        circuit_phases=1, connectors=(connector,))
    margin = live.LAST_SEEN_RESOLUTION_S + smart_charging.SILENCE_MARGIN_S
    assert smart_charging.silence_bound_s(plan, 60) == 60 + margin  # no transaction: its heartbeat
    assert smart_charging.silence_bound_s(plan, 0) == 300 + margin  # not known: the platform's heartbeat
    charging = copy_with(plan, connectors=(copy_with(connector, transaction_id=7),))
    assert smart_charging.silence_bound_s(charging, 60) == 15 + margin  # a transaction: its meter values
    assert smart_charging.silence_bound_s(copy_with(charging, configuration={}), 60) == 60 + margin
