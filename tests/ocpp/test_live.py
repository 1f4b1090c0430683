"""The typed reader of the chargers' live state in Redis (what dashboards and the load balancer read), against
the real Redis: from what a connection writes, and straight from the hash."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import redis
from asgiref.sync import sync_to_async

from apps.ocpp import live
from apps.ocpp.live import ChargerLive, ConnectorLive
from tests import factories
from tests.helpers import iso
from tests.ocpp.charger import FakeCharger
from tests.ocpp.conftest import communicator
from tests.ocpp.helpers import closed_within


async def test_a_charging_connector_reads_back_typed(maple_schema, connected, world):
    tag = f"LV{uuid.uuid4().hex[:10].upper()}"
    await sync_to_async(factories.resident)(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    await connected.boot()
    await connected.settle(0.5)  # GetConfiguration and the metering changes
    now = datetime.now(UTC).replace(microsecond=0)
    await connected.call("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"})
    await connected.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
    start = await connected.call("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 1000,
                                                      "timestamp": iso(now)})
    answer = await connected.call("MeterValues", {"connectorId": 1, "transactionId": start[2]["transactionId"], "meterValue": [{
        "timestamp": iso(now + timedelta(seconds=60)),
        "sampledValue": [
            {"value": "1.25", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
            {"value": "15.8", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
            {"value": "15.9", "measurand": "Current.Import", "phase": "L2", "unit": "A"},
            {"value": "16.1", "measurand": "Current.Import", "phase": "L3-N", "unit": "A"},
            {"value": "11.0", "measurand": "Power.Active.Import", "unit": "kW"},
        ]}]})
    assert answer[0] == 3, answer
    cp_id = connected.charge_point_id

    charger = (await sync_to_async(live.read_building_live)([cp_id]))[cp_id]

    assert charger.connected and charger.schema == maple_schema and charger.heartbeat_interval_s == 300
    assert charger.last_seen is not None and abs(charger.last_seen - datetime.now(UTC)) < timedelta(minutes=1)
    assert (charger.status, charger.error_code) == ("Available", "NoError")
    heard = charger.connector(1).current_at  # the platform's clock (not the charger's 60 s later stamp)
    assert heard is not None and abs(heard - datetime.now(UTC)) < timedelta(seconds=30)
    assert charger.connector(1) == ConnectorLive(
        number=1, status="Charging", error_code="NoError", current_l1_a=Decimal("15.8"),
        current_l2_a=Decimal("15.9"), current_l3_a=Decimal("16.1"), power_w=Decimal("11000"), register_wh=1250,
        transaction_id=start[2]["transactionId"], meter_start_wh=1000, session_energy_wh=250, current_at=heard,
    )
    assert charger.connector(1).currents_a == (Decimal("15.8"), Decimal("15.9"), Decimal("16.1"))
    assert charger.connector(2) == ConnectorLive(2)  # nothing reported yet

    await connected.transport.disconnect()
    after = (await sync_to_async(live.read_building_live)([cp_id]))[cp_id]
    assert not after.connected and after.connector(1).status == "Charging"  # the last report stays


def test_many_chargers_in_one_round_trip_and_unknown_ones_empty(maple_schema, monkeypatch, settings):
    known, unreported = f"LIVE-{uuid.uuid4().hex[:8]}", f"LIVE-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    client.hset(live.key(known), mapping={
        "schema": maple_schema, "connected": "1", "last_seen": "1767225600", "heartbeat_interval": "300",
        "status:2": "SuspendedEV", "current_a:2:L1": "6.0", "power_w:2": "not a number",
        "current_a:2:N": "0.4", "session_energy_wh:2": "17", "diagnostics_status": "Uploaded",
    })
    executed: list[int] = []
    original = redis.client.Pipeline.execute

    def counting(pipeline, *args, **kwargs):
        executed.append(len(pipeline.command_stack))
        return original(pipeline, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    try:
        states = live.read_building_live([known, unreported])
    finally:
        client.delete(live.key(known))

    assert executed == [2]  # both chargers, one round trip
    assert states[unreported] == ChargerLive(unreported)
    charger = states[known]
    assert charger.connected and charger.last_seen == datetime(2026, 1, 1, tzinfo=UTC)
    assert charger.connector(2) == ConnectorLive(
        number=2, status="SuspendedEV", current_l1_a=Decimal("6.0"), session_energy_wh=17,  # no power: unreadable
    )
    assert live.read_building_live([]) == {}


async def _hash(cp_id: str) -> dict[str, str]:
    return await live.read(cp_id)


async def test_a_connection_writes_only_what_the_live_state_does_not_hold_and_restores_it_when_lost(
        charger_id, monkeypatch):
    """A reconnect repeats its statuses: the live hash already holds them, so nothing is written (a reconnect
    storm's Redis round trips). The connection mirrors the hash; if Redis loses it (it keeps nothing on disk),
    the next message writes back everything the connection knows."""
    from apps.ocpp import consumer

    first = FakeCharger(communicator(charger_id))
    assert (await first.transport.connect(timeout=5))[0]
    await first.boot()
    await first.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
    await first.transport.disconnect()
    assert (await _hash(charger_id))["connected"] == "0"

    again = FakeCharger(communicator(charger_id))
    assert (await again.transport.connect(timeout=5))[0]
    try:
        state = await _hash(charger_id)
        assert state["connected"] == "1" and state["status:1"] == "Available"
        # Written behind the connection's back: the same status reported again is not written, a new one is.
        await live.update(charger_id, {"status:1": "Sentinel"})
        await again.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
        assert (await _hash(charger_id))["status:1"] == "Sentinel"
        await again.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"})
        assert (await _hash(charger_id))["status:1"] == "Preparing"

        await live.client().delete(live.key(charger_id))  # Redis restarted
        monkeypatch.setattr(consumer, "TOUCH_EVERY_S", 0.0)
        await again.call("Heartbeat", {})
        restored = await _hash(charger_id)
        assert restored["connected"] == "1" and restored["schema"] and restored["channel"]
        assert restored["status:1"] == "Preparing" and restored["error_code:1"] == "NoError"
        assert restored["heartbeat_interval"] == state["heartbeat_interval"]
    finally:
        await again.transport.disconnect()


async def test_a_new_connection_tells_the_older_one_the_live_state_names_to_close(charger_id):
    """The live hash names the charger's connection by its channel. A new connection tells the one it names to
    close when the hash says it is open (a process that died, a socket not yet seen closing), and says nothing
    after a clean disconnect or when the hash is gone: a reconnect storm saves its round trips."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    older = await layer.new_channel()

    async def connect_and_heard() -> bool:
        charger = FakeCharger(communicator(charger_id))
        assert (await charger.transport.connect(timeout=5))[0]
        try:
            message = await asyncio.wait_for(layer.receive(older), timeout=1)
        except TimeoutError:
            message = None
        finally:
            await charger.transport.disconnect()
        return message is not None and message["type"] == "ocpp.replaced"

    await live.client().delete(live.key(charger_id))
    assert not await connect_and_heard()  # nothing known: an older connection learns it at its next touch
    assert (await _hash(charger_id))["connected"] == "0"
    await live.update(charger_id, {"channel": older})
    assert not await connect_and_heard()  # the last one left cleanly
    await live.update(charger_id, {"connected": "1", "channel": older})
    assert await connect_and_heard()  # the hash says it is open


async def test_an_older_connection_closes_at_its_next_touch_once_another_holds_the_live_state(
        charger_id, monkeypatch):
    """Where Redis lost the hash, the new connection cannot know the older one's channel. The older one, still
    open, finds at its next touch that the hash names another connection: it writes nothing and closes."""
    from apps.ocpp import consumer

    monkeypatch.setattr(consumer, "TOUCH_EVERY_S", 0.0)
    first = FakeCharger(communicator(charger_id))
    assert (await first.transport.connect(timeout=5))[0]
    await first.boot()
    await live.client().delete(live.key(charger_id))  # Redis restarted
    second = FakeCharger(communicator(charger_id))
    assert (await second.transport.connect(timeout=5))[0]
    try:
        held = await _hash(charger_id)
        await first.transport.send_to(text_data=json.dumps([2, "t1", "Heartbeat", {}]))
        closed = await closed_within(first, 5)
        assert closed["code"] == 1000
        after = await _hash(charger_id)
        assert after["channel"] == held["channel"] and after["last_seen"] == held["last_seen"]
        assert after["connected"] == "1"
        assert (await second.call("Heartbeat", {}))[0] == 3  # the newer one is served
    finally:
        await second.transport.disconnect()
