"""A charger (or anything that reaches the port) must not be able to hurt the platform.

Bad values inside well-formed frames are refused at the edge with the OCPP-J error that names them, never
InternalError; junk unique ids, floods and unsolicited answers are answered or end the connection at once,
with the reason logged and an alert for the managers.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta

from apps.alerts.models import Alert
from apps.charging.models import ChargePoint, ChargingSession
from apps.core.tenants import run_in_schema
from apps.ocpp.models import OcppFrame
from apps.tenancy.models import ConnectionAttempt
from tests.helpers import iso
from tests.ocpp.charger import FakeCharger
from tests.ocpp.conftest import communicator
from tests.ocpp.helpers import CHARGER_CALLS, closed_within, mutate


async def test_junk_unique_ids_are_answered_or_cut_off_promptly_never_hung(connected):
    # A number where the unique id belongs: answered FormationViolation under the only id there is.
    for _ in range(50):
        reply = await connected.send_raw('[2,123,"Heartbeat",{}]')
        assert reply[0] == 4 and reply[1] == "123" and reply[2] == "FormationViolation"
    assert (await connected.call("Heartbeat", {}, unique_id="good-one"))[0] == 3
    # Two thousand at once, without waiting for the answers: a Heartbeat after them is answered, or the
    # connection is closed, within 10 s.
    for _ in range(2000):
        await connected.transport.send_to(text_data='[2,123,"Heartbeat",{}]')
    await connected.transport.send_to(text_data='[2,"good-two","Heartbeat",{}]')
    deadline = time.monotonic() + 10
    while True:
        output = await connected.transport.receive_output(timeout=max(deadline - time.monotonic(), 0.01))
        if output["type"] == "websocket.close":
            assert output.get("code") == 1008
            break
        if json.loads(output["text"])[1] == "good-two":
            break


async def test_a_flood_of_frames_closes_the_connection_with_a_reason_and_an_alert(maple_schema, connected):
    await connected.boot()
    await connected.settle(0.5)
    for _ in range(3000):
        await connected.transport.send_to(text_data='[2,123,"Heartbeat",{}]')
    closed = await closed_within(connected, 10)
    assert closed.get("code") == 1008
    alerts = await run_in_schema(maple_schema, lambda: list(Alert.objects.filter(
        kind=Alert.Kind.CHARGER_MISBEHAVING, charge_point_id=connected.charge_point_id).values_list("message",
                                                                                                  flat=True)))
    assert len(alerts) == 1 and "was disconnected" in alerts[0] and "frames" in alerts[0]


async def test_unsolicited_answers_are_dropped_and_a_stream_of_them_closes_the_connection(connected):
    await connected.boot()
    await connected.settle(0.5)
    for n in range(5):
        await connected.transport.send_to(text_data=json.dumps([3, f"never-asked-{n}", {}]))
    assert (await connected.call("Heartbeat", {}))[0] == 3
    for n in range(200):
        await connected.transport.send_to(text_data=json.dumps([3, f"never-asked-more-{n}", {}]))
    closed = await closed_within(connected, 10)
    assert closed.get("code") == 1008


async def test_bad_values_in_well_formed_frames_name_the_field_and_never_internal_error(maple_schema, connected):
    await connected.boot()
    await connected.settle(0.5)
    now = iso(datetime.now(UTC) - timedelta(minutes=5))
    nul_vendor = await connected.call("BootNotification", {"chargePointVendor": "\u0000", "chargePointModel": "M"})
    assert nul_vendor[0] == 4 and nul_vendor[2] == "PropertyConstraintViolation"
    assert "chargePointVendor" in nul_vendor[3]
    huge_tx = await connected.call("StopTransaction", {"transactionId": 2**53, "meterStop": 1, "timestamp": now})
    assert huge_tx[0] == 4 and huge_tx[2] == "TypeConstraintViolation" and "transactionId" in huge_tx[3]
    huge_meter = await connected.call("StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 2**53,
                                                          "timestamp": now})
    assert huge_meter[0] == 4 and huge_meter[2] == "TypeConstraintViolation" and "meterStart" in huge_meter[3]
    negative = await connected.call("StartTransaction", {"connectorId": -3, "idTag": "X", "meterStart": 0,
                                                        "timestamp": now})
    assert negative[0] == 4 and negative[2] == "PropertyConstraintViolation" and "connectorId" in negative[3]
    nul_value = await connected.call("MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": now, "sampledValue": [{"value": "1\u00002"}]}]})
    assert nul_value[0] == 4 and nul_value[2] == "PropertyConstraintViolation"
    assert "meterValue[0].sampledValue[0].value" in nul_value[3]
    # An uncommissioned connector: the session is kept (energy was delivered) and flagged for review.
    far = await connected.call("StartTransaction", {"connectorId": 9, "idTag": "X", "meterStart": 0,
                                                   "timestamp": now})
    assert far[0] == 3
    session = await run_in_schema(maple_schema, ChargingSession.objects.get, transaction_id=far[2]["transactionId"])
    assert session.needs_review and "connector 9" in session.review_reason
    assert (await connected.call("Heartbeat", {}))[0] == 3


async def test_unknown_action_is_not_implemented_and_a_known_one_we_do_not_take_is_not_supported(connected):
    unknown = await connected.call("FlyToTheMoon", {})
    assert unknown[0] == 4 and unknown[2] == "NotImplemented"
    server_action = await connected.call("Reset", {"type": "Soft"})
    assert server_action[0] == 4 and server_action[2] == "NotSupported"


# --- the seeded fuzz: thousands of mutated charger-to-server frames -------------------------------------------

async def test_seeded_fuzz_of_charger_frames_never_gets_internal_error(maple_schema, charger_id, settings):
    settings.OCPP_MAX_FRAME_RATE = 10_000  # the fuzz waits for every answer; the rate limit is tested below
    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]
    connected = FakeCharger(comm)
    connected.charge_point_id = charger_id
    rng = random.Random(20261129)
    await connected.boot()
    await connected.settle(0.5)
    internal = []
    for n in range(2500):
        action = rng.choice(sorted(CHARGER_CALLS))
        payload = mutate(CHARGER_CALLS[action], rng)
        reply = await connected.call(action, payload, unique_id=f"fz{n}")
        if reply[0] == 4 and reply[2] in ("InternalError", "GenericError"):
            internal.append((action, payload, reply))
        if n % 250 == 0:
            await connected.settle(0.01)  # answer whatever the platform asked meanwhile
    assert internal == [], internal[:5]
    assert (await connected.call("Heartbeat", {}))[0] == 3
    stored = await run_in_schema(maple_schema, lambda: OcppFrame.objects.filter(
        charge_point_id=connected.charge_point_id, direction="in").count())
    assert stored >= 2500
    assert await run_in_schema(maple_schema,
                               ChargePoint.objects.filter(charge_point_id=connected.charge_point_id).exists)
    await comm.disconnect()


async def test_a_charger_faster_than_the_frame_rate_is_slowed_down_not_cut_off(charger_id, settings):
    settings.OCPP_MAX_FRAME_RATE, settings.OCPP_FRAME_BURST = 20, 20
    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]
    charger = FakeCharger(comm)
    started = time.monotonic()
    for n in range(60):
        assert (await charger.call("Heartbeat", {}, unique_id=f"hb{n}"))[0] == 3
    # 20 at once, then 40 more at 20 per second.
    assert time.monotonic() - started >= 1.8
    await comm.disconnect()


async def test_bounded_inbox_closes_a_charger_that_does_not_wait_for_answers(charger_id, settings):
    from apps.ocpp import consumer as consumer_module

    # Slow handling down (the rate limit delays each frame), so that the burst below surely piles up.
    settings.OCPP_MAX_FRAME_RATE, settings.OCPP_FRAME_BURST = 5, 1
    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]
    charger = FakeCharger(comm)
    # Many calls in one burst, without waiting for the answers: the inbox fills up.
    for n in range(consumer_module.MAX_INBOX * 3):
        await comm.send_to(text_data=json.dumps([2, f"s{n}", "Authorize", {"idTag": f"T{n}"}]))
    closed = await closed_within(charger, 15)
    assert closed.get("code") == 1008


# --- admission control ----------------------------------------------------------------------------------------


async def test_a_saturated_process_refuses_handshakes_at_once_and_takes_them_again_later(charger_id, settings):
    from apps.ocpp import admission

    settings.OCPP_MAX_CONCURRENT_HANDSHAKES = 0
    refused_before = admission.handshakes.refused
    assert not (await communicator(charger_id).connect(timeout=5))[0]
    assert admission.handshakes.refused == refused_before + 1
    # Nothing was recorded for it: shedding load must not add any.
    attempts = await run_in_schema("public", lambda: ConnectionAttempt.objects.filter(
        charge_point_id=charger_id).count())
    assert attempts == 0
    settings.OCPP_MAX_CONCURRENT_HANDSHAKES = 100
    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]
    assert admission.handshakes.in_progress == 0
    await comm.disconnect()


async def test_a_saturated_process_answers_boot_pending_with_a_jittered_interval(maple_schema, connected, settings,
                                                                                 monkeypatch):
    from apps.ocpp import admission

    monkeypatch.setattr(admission, "boots", admission.Gate())  # nothing measured yet: no rate
    settings.OCPP_MAX_CONCURRENT_BOOTS = 0
    intervals = set()
    for _ in range(5):
        reply = await connected.boot()
        assert reply[2]["status"] == "Pending"
        intervals.add(reply[2]["interval"])
    assert all(admission.PENDING_INTERVAL_S[0] <= i <= admission.PENDING_INTERVAL_S[1] for i in intervals)
    assert len(intervals) > 1  # jittered
    await connected.settle(0.5)
    assert connected.received_calls == []  # no configuration for a charger told to come back later
    vendor = await run_in_schema(maple_schema,
                                 lambda: ChargePoint.objects.get(charge_point_id=connected.charge_point_id).vendor)
    assert vendor == ""  # nothing written either
    settings.OCPP_MAX_CONCURRENT_BOOTS = 100
    reply = await connected.boot()
    assert reply[2]["status"] == "Accepted"
    await connected.settle(1.0)
    assert [action for action, _ in connected.received_calls][:1] == ["GetConfiguration"]
    assert admission.boots.in_progress == 0  # the place is free once the configuration is done


async def test_boots_told_pending_get_appointments_at_the_rate_the_process_finishes_boots(connected, settings,
                                                                                          monkeypatch):
    from apps.ocpp import admission

    gate = admission.Gate()
    now = time.monotonic()
    for n in range(200):  # 200 boots finished over the last 5 s: 40 a second
        gate.in_progress += 1
        gate.leave(now - 5 + n / 40)
    gate.in_progress = 120  # and 120 in progress: 3 s of work
    monkeypatch.setattr(admission, "boots", gate)
    settings.OCPP_MAX_CONCURRENT_BOOTS = 100
    settings.OCPP_ADMISSION_BUDGET_S = 2  # 40/s x 2 s = 80 < 100: the count applies, and 120 are in progress
    intervals = []
    for _ in range(3):
        reply = await connected.boot()
        assert reply[2]["status"] == "Pending"
        intervals.append(reply[2]["interval"])
    # 120 in progress at 40/s: back in 3 s, then one place each 1/40 s (a fixed 10-30 s before).
    assert all(3 <= i <= 4 for i in intervals), intervals
    settings.OCPP_ADMISSION_BUDGET_S = 10  # 40/s x 10 s = 400 may be in progress: the 121st is taken
    reply = await connected.boot()
    assert reply[2]["status"] == "Accepted"


async def test_a_charger_back_at_its_appointment_is_taken_though_newcomers_filled_the_gate(connected, settings,
                                                                                            monkeypatch):
    from apps.ocpp import admission

    gate = admission.Gate()
    now = time.monotonic()
    for n in range(200):  # 40 boots a second finished over the last 5 s
        gate.in_progress += 1
        gate.leave(now - 5 + n / 40)
    gate.in_progress = 10  # the gate is full: newcomers took every place
    monkeypatch.setattr(admission, "boots", gate)
    settings.OCPP_MAX_CONCURRENT_BOOTS = 10
    settings.OCPP_ADMISSION_BUDGET_S = 0
    reply = await connected.boot()
    assert reply[2]["status"] == "Pending"
    assert reply[2]["interval"] == admission.PENDING_MIN_S
    reply = await connected.boot()  # too early: not an appointment kept
    assert reply[2]["status"] == "Pending"
    await asyncio.sleep(reply[2]["interval"])
    reply = await connected.boot()  # still full, but this one was told to come back now
    assert reply[2]["status"] == "Accepted"


async def test_a_handshake_when_redis_cannot_be_reached_is_refused_not_a_server_error(charger_id, monkeypatch, caplog):
    """Redis unreachable, or the process's pool busy for its whole timeout (a storm on a saturated process): the
    charger is refused (403) and retries, as when the process sheds load; no traceback, no 500."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    from apps.core import live_store
    from apps.ocpp import admission

    nowhere = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(live_store, "client", lambda: nowhere)
    from apps.ocpp import consumer

    monkeypatch.setattr(consumer, "_last_shed_log", [0.0])  # the shed line is logged at most once a second
    caplog.set_level("WARNING")
    in_progress = admission.handshakes.in_progress
    assert not (await communicator(charger_id).connect(timeout=10))[0]
    assert admission.handshakes.in_progress == in_progress
    assert any("handshake (Redis:" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    monkeypatch.undo()
    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]  # Redis back: taken
    await comm.disconnect()
