"""Charger-initiated messages, the frame log and protocol errors, over the real ASGI app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from asgiref.sync import sync_to_async

from apps.alerts.models import Alert
from apps.buildings.models import IdTag
from apps.charging.models import ChargePoint, Connector, MeterValue
from apps.core.tenants import in_schema, run_in_schema
from apps.ocpp import live
from apps.ocpp.models import OcppFrame
from tests import factories
from tests.helpers import iso
from tests.ocpp.charger import FakeCharger
from tests.ocpp.conftest import communicator


async def test_boot_is_accepted_recorded_and_followed_by_configuration(maple_schema, connected):
    reply = await connected.boot()
    assert reply[2]["status"] == "Accepted"
    assert reply[2]["interval"] == 300
    await connected.settle(1.0)
    actions = [action for action, _ in connected.received_calls]
    assert actions[0] == "GetConfiguration"
    changes = {p["key"]: p["value"] for a, p in connected.received_calls if a == "ChangeConfiguration"}
    assert changes["MeterValuesSampledData"] == "Energy.Active.Import.Register,Current.Import,Power.Active.Import"
    assert changes["MeterValueSampleInterval"] == "15"
    cp = await run_in_schema(maple_schema, ChargePoint.objects.get, charge_point_id=connected.charge_point_id)
    assert (cp.vendor, cp.model, cp.serial_number, cp.firmware_version) == ("Acme", "Wallbox 22", "SN-1", "1.2.3")
    assert cp.is_online
    assert cp.configuration["ChargeProfileMaxStackLevel"]["value"] == "8"
    assert cp.configuration["MeterValueSampleInterval"]["value"] == "15"
    assert "SomeVendorKey" not in cp.configuration


async def test_disabled_charger_gets_pending_and_no_configuration(maple_schema, charger_id):
    await run_in_schema(maple_schema,
                        lambda: ChargePoint.objects.filter(charge_point_id=charger_id).update(enabled=False))
    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]
    charger = FakeCharger(comm)
    reply = await charger.boot()
    assert reply[2]["status"] == "Pending"
    await charger.settle(0.5)
    assert charger.received_calls == []
    await comm.disconnect()


async def test_every_frame_in_and_out_is_logged(maple_schema, connected):
    await connected.call("Heartbeat", {}, unique_id="hb-1")
    await connected.send_raw("not json at all")
    await connected.transport.disconnect()
    frames = await run_in_schema(maple_schema, lambda: list(OcppFrame.objects.filter(
        charge_point_id=connected.charge_point_id).order_by("id").values_list("direction", "message_type", "action",
                                                                               "unique_id", "raw")))
    assert frames[0] == ("in", 2, "Heartbeat", "hb-1", '[2, "hb-1", "Heartbeat", {}]')
    assert frames[1][:4] == ("out", 3, "Heartbeat", "hb-1")
    assert frames[2][0] == "in" and frames[2][4] == "not json at all"
    assert frames[3][0] == "out" and frames[3][1] == 4


async def test_protocol_errors_get_the_right_callerror_and_the_connection_survives(connected):
    bad_json = await connected.send_raw('[2, "x1", "Heartbeat", {')
    assert bad_json[0] == 4 and bad_json[2] == "FormationViolation"
    # OCPP-J 1.6 section 4.2.3: an action not known at all is NotImplemented; one known but not taken
    # from a charger is NotSupported.
    unknown = await connected.call("FlyToTheMoon", {})
    assert unknown[0] == 4 and unknown[2] == "NotImplemented"
    not_supported = await connected.call("RemoteStartTransaction", {"idTag": "x"})
    assert not_supported[0] == 4 and not_supported[2] == "NotSupported"
    missing = await connected.call("StatusNotification", {"connectorId": 1})
    assert missing[0] == 4 and missing[2] == "ProtocolError"
    wrong_type = await connected.call("StatusNotification", {"connectorId": "one", "errorCode": "NoError",
                                                            "status": "Available"})
    assert wrong_type[0] == 4 and wrong_type[2] == "TypeConstraintViolation"
    extra = await connected.call("Heartbeat", {"unexpected": 1})
    assert extra[0] == 4 and extra[2] == "FormationViolation"
    not_a_list = await connected.send_raw('{"hello": 1}')
    assert not_a_list[0] == 4 and not_a_list[2] == "ProtocolError"
    still_alive = await connected.call("Heartbeat", {})
    assert still_alive[0] == 3


async def test_a_broken_charger_does_not_disturb_another(connected, new_charger):
    other_id = await sync_to_async(new_charger)()
    other = communicator(other_id)
    assert (await other.connect(timeout=5))[0]
    for _ in range(5):
        await connected.send_raw("\x00garbage")
    reply = await FakeCharger(other).call("Heartbeat", {})
    assert reply[0] == 3
    await other.disconnect()


async def test_a_nul_character_is_logged_escaped_and_fails_nothing_after_it(maple_schema, connected):
    """PostgreSQL's text holds no NUL: a frame with one must not fail the charger's next answers."""
    await connected._send("\x00garbage")
    # A unique id that JSON decodes to one with a NUL, then a plain call: both answered, neither InternalError.
    assert (await connected.call("Heartbeat", {}, unique_id="nul\x00id"))[0] == 3
    assert (await connected.call("Heartbeat", {}))[0] == 3
    raws = await run_in_schema(maple_schema, lambda: list(OcppFrame.objects.filter(
        charge_point_id=connected.charge_point_id, direction="in").values_list("raw", "unique_id")))
    assert ("\\u0000garbage", "") in raws
    assert ('[2, "nul\\u0000id", "Heartbeat", {}]', "nul\\u0000id") in raws


async def test_status_notifications_per_connector_and_faulted_raises_an_alert(maple_schema, connected):
    cp_id = connected.charge_point_id
    for n in (0, 1, 2):
        reply = await connected.call("StatusNotification", {"connectorId": n, "errorCode": "NoError",
                                                            "status": "Available"})
        assert reply[0] == 3
    await connected.call("StatusNotification", {"connectorId": 2, "errorCode": "GroundFailure", "status": "Faulted",
                                                "info": "RCD tripped"})
    statuses = await run_in_schema(maple_schema, lambda: dict(Connector.objects.filter(
        charge_point__charge_point_id=cp_id).values_list("connector_id", "status")))
    assert statuses == {1: "Available", 2: "Faulted"}
    assert (await run_in_schema(maple_schema, ChargePoint.objects.get, charge_point_id=cp_id)).status == "Available"
    alert = await run_in_schema(maple_schema, Alert.objects.get, charge_point_id=cp_id, kind="connector_faulted")
    assert alert.connector_number == 2 and alert.details["error_code"] == "GroundFailure"
    assert alert.resolved_at is None
    state = await live.read(cp_id)
    assert state["status:2"] == "Faulted" and state["error_code:2"] == "GroundFailure"
    await connected.call("StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Available"})
    alert = await run_in_schema(maple_schema, Alert.objects.get, pk=alert.pk)
    assert alert.resolved_at is not None


def _make_tags(world) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:6].upper()
    tags = {name: f"{name[:3].upper()}{suffix}" for name in ("ok", "blocked", "lost", "expired", "solo")}
    factories.resident(world.maple, f"tags-{suffix}@maple.test", f"T{suffix}", id_tags=tuple(tags.values()))
    factories.resident(world.maple, f"solo-{suffix}@maple.test", f"S{suffix}", id_tags=())
    with in_schema(world.maple.schema_name):
        IdTag.objects.filter(id_tag=tags["ok"]).update(parent_id_tag=f"HOUSE{suffix}")
        IdTag.objects.filter(id_tag=tags["blocked"]).update(status=IdTag.Status.BLOCKED)
        IdTag.objects.filter(id_tag=tags["lost"]).update(status=IdTag.Status.LOST)
        IdTag.objects.filter(id_tag=tags["expired"]).update(expires_at=datetime.now(UTC) - timedelta(days=1))
    return tags


async def test_authorize_answers(connected, world, new_charger):
    tags = await sync_to_async(_make_tags)(world)

    async def status(tag):
        reply = await connected.call("Authorize", {"idTag": tag})
        return reply[2]["idTagInfo"]

    ok = await status(tags["ok"].lower())
    assert ok["status"] == "Accepted" and ok["parentIdTag"].startswith("HOUSE")
    assert (await status(tags["blocked"]))["status"] == "Blocked"
    assert (await status(tags["lost"]))["status"] == "Blocked"
    assert (await status(tags["expired"]))["status"] == "Expired"
    assert (await status("NOBODY"))["status"] == "Invalid"
    # A tag of another building is unknown here.
    assert (await status("0C0C0C0C"))["status"] == "Invalid"

    # The resident charges on another charger: ConcurrentTx (their policy forbids two sessions).
    other_id = await sync_to_async(new_charger)()
    other = communicator(other_id)
    assert (await other.connect(timeout=5))[0]
    started = await FakeCharger(other).call("StartTransaction", {
        "connectorId": 1, "idTag": tags["solo"], "meterStart": 0, "timestamp": iso(datetime.now(UTC))})
    assert started[2]["idTagInfo"]["status"] == "Accepted"
    assert (await status(tags["solo"]))["status"] == "ConcurrentTx"
    await other.disconnect()


async def test_data_transfer_and_notifications(connected):
    reply = await connected.call("DataTransfer", {"vendorId": "com.example", "messageId": "x", "data": "{}"})
    assert reply[2] == {"status": "UnknownVendorId"}
    assert (await connected.call("DiagnosticsStatusNotification", {"status": "Uploaded"}))[0] == 3
    assert (await connected.call("FirmwareStatusNotification", {"status": "Installing"}))[0] == 3
    state = await live.read(connected.charge_point_id)
    assert state["diagnostics_status"] == "Uploaded" and state["firmware_status"] == "Installing"


async def test_meter_values_all_measurands_are_stored_once_and_feed_the_live_state(maple_schema, connected, world):
    # A resident of its own: the session stays open, and Alice's tag must stay free for other tests
    # (an open session of hers elsewhere makes her ConcurrentTx).
    tag = f"MV{uuid.uuid4().hex[:10].upper()}"
    await sync_to_async(factories.resident)(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    now = datetime.now(UTC).replace(microsecond=0)
    start = await connected.call("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 1000,
                                                      "timestamp": iso(now)})
    tx = start[2]["transactionId"]
    payload = {"connectorId": 1, "transactionId": tx, "meterValue": [{
        "timestamp": iso(now + timedelta(seconds=60)),
        "sampledValue": [
            {"value": "1250", "measurand": "Energy.Active.Import.Register", "unit": "Wh", "context": "Sample.Periodic"},
            {"value": "1.25", "measurand": "Energy.Active.Import.Register", "unit": "kWh", "location": "Inlet"},
            {"value": "15.8", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "16.1", "measurand": "Current.Import", "phase": "L3", "unit": "A"},
            {"value": "11.0", "measurand": "Power.Active.Import", "unit": "kW"},
            {"value": "231.4", "measurand": "Voltage", "phase": "L1-N", "unit": "V"},
            {"value": "41", "measurand": "SoC", "unit": "Percent", "context": "Sample.Clock"},
            {"value": "35.5", "measurand": "Temperature", "unit": "Celsius", "location": "Body"},
        ]}]}
    assert (await connected.call("MeterValues", payload))[0] == 3
    # Re-sent after a reconnect: stored once.
    assert (await connected.call("MeterValues", payload))[0] == 3
    # Connector 0 (the charger's own meter), no transaction.
    assert (await connected.call("MeterValues", {"connectorId": 0, "meterValue": [{
        "timestamp": iso(now + timedelta(seconds=60)), "sampledValue": [{"value": "99999"}]}]}))[0] == 3
    state = await live.read(connected.charge_point_id)
    assert state["current_a:1:L1"] == "15.8" and state["current_a:1:L3"] == "16.1"
    assert state["power_w:1"] == "11000"
    assert state["session_energy_wh:1"] == "250"
    await connected.transport.disconnect()
    rows = await run_in_schema(maple_schema, lambda: list(MeterValue.objects.filter(
        charge_point__charge_point_id=connected.charge_point_id).values(
        "connector_number", "measurand", "phase", "unit", "context", "location", "value", "normalized",
        "session__transaction_id")))
    assert len(rows) == 10
    by_key = {(r["measurand"], r["phase"], r["location"]): r for r in rows}
    assert by_key[("Current.Import", "L2", "")]["normalized"] == 15900  # mA
    assert by_key[("Power.Active.Import", "", "")]["normalized"] == 11000  # W
    assert by_key[("Energy.Active.Import.Register", "", "Inlet")]["normalized"] == 1250  # Wh
    assert by_key[("SoC", "", "")]["context"] == "Sample.Clock"
    assert by_key[("Temperature", "", "Body")]["normalized"] is None
    assert by_key[("Current.Import", "L1", "")]["session__transaction_id"] == tx
    main_meter = [r for r in rows if r["connector_number"] == 0]
    assert main_meter[0]["unit"] == "Wh" and main_meter[0]["session__transaction_id"] is None
    assert by_key[("Voltage", "L1-N", "")]["value"] == Decimal("231.4")


async def test_a_charger_that_refuses_power_is_asked_for_the_register_and_currents(maple_schema, charger_id):
    wanted = "Energy.Active.Import.Register,Current.Import,Power.Active.Import"

    def change(payload: dict) -> dict:
        return {"status": "Rejected" if payload["value"] == wanted else "Accepted"}

    comm = communicator(charger_id)
    assert (await comm.connect(timeout=5))[0]
    charger = FakeCharger(comm, answers={"ChangeConfiguration": change})
    assert (await charger.boot())[2]["status"] == "Accepted"
    await charger.settle(1.0)
    asked = [(p["key"], p["value"]) for a, p in charger.received_calls if a == "ChangeConfiguration"]
    assert asked == [("MeterValuesSampledData", wanted),
                     ("MeterValuesSampledData", "Energy.Active.Import.Register,Current.Import"),
                     ("MeterValueSampleInterval", "15")]
    cp = await run_in_schema(maple_schema, ChargePoint.objects.get, charge_point_id=charger_id)
    assert cp.configuration["MeterValuesSampledData"]["value"] == "Energy.Active.Import.Register,Current.Import"
    await comm.disconnect()


async def test_a_reboot_soon_after_skips_reading_the_configuration_but_syncs_the_local_list(maple_schema, charger_id):
    from apps.charging import local_lists

    first = communicator(charger_id)
    assert (await first.connect(timeout=5))[0]
    charger = FakeCharger(first)
    assert (await charger.boot())[2]["status"] == "Accepted"
    await charger.settle(1.0)
    assert [a for a, _ in charger.received_calls][:1] == ["GetConfiguration"]
    await first.disconnect()
    await run_in_schema(maple_schema, lambda: ChargePoint.objects.filter(charge_point_id=charger_id).update(
        configuration={**ChargePoint.objects.get(charge_point_id=charger_id).configuration,
                       "SupportedFeatureProfiles": {"value": "Core,LocalAuthListManagement", "readonly": True}}))
    queued = []
    original = local_lists._sync_queue
    local_lists.local_list_sync_queue(lambda schema, pks: queued.append((schema, pks)))  # the Celery task's hook
    try:
        # A restart of the platform: the charger reconnects and boots again a minute later.
        again = communicator(charger_id)
        assert (await again.connect(timeout=5))[0]
        charger = FakeCharger(again)
        assert (await charger.boot())[2]["status"] == "Accepted"
        await charger.settle(1.0)
        assert charger.received_calls == []  # configuration read lately and as wanted: not again
        assert len(queued) == 1 and queued[0][0] == maple_schema  # its local list is still brought up to date
        await again.disconnect()
        # A day later it is read again.
        await run_in_schema(maple_schema, lambda: ChargePoint.objects.filter(charge_point_id=charger_id).update(
            configuration_read_at=datetime.now(UTC) - timedelta(hours=25)))
        late = communicator(charger_id)
        assert (await late.connect(timeout=5))[0]
        charger = FakeCharger(late)
        await charger.boot()
        await charger.settle(1.0)
        assert [a for a, _ in charger.received_calls][:1] == ["GetConfiguration"]
        await late.disconnect()
    finally:
        local_lists.local_list_sync_queue(original)
