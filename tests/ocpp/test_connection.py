"""The handshake: subprotocol, Basic auth against the registry, removed chargers, replacement."""

from __future__ import annotations

import json
import uuid

from asgiref.sync import sync_to_async
from django.utils import timezone

from apps.charging.models import ChargePoint
from apps.ocpp import live
from apps.tenancy.models import ConnectionAttempt
from tests.ocpp.charger import FakeCharger
from tests.ocpp.conftest import communicator, in_schema


async def test_charger_with_right_password_connects_with_ocpp16(charger_id):
    comm = communicator(charger_id)
    connected, subprotocol = await comm.connect(timeout=5)
    assert connected
    assert subprotocol == "ocpp1.6"
    # Connected in the live state by the time the handshake completes: commands can be sent at once.
    assert (await live.read(charger_id))["connected"] == "1"
    reply = await FakeCharger(comm).call("Heartbeat", {})
    assert reply[0] == 3 and "currentTime" in reply[2]
    await comm.disconnect()


async def test_connection_without_ocpp16_subprotocol_is_refused(charger_id):
    comm = communicator(charger_id, subprotocols=("ocpp2.0.1",))
    connected, _ = await comm.connect(timeout=5)
    assert not connected


async def test_wrong_password_missing_credentials_and_unknown_charger_are_refused_and_logged(charger_id):
    unknown = f"NO-SUCH-{uuid.uuid4().hex[:8]}"
    for comm in (communicator(charger_id, password="wrong"), communicator(charger_id, auth=False),
                 communicator(unknown), communicator(charger_id, username="someone-else")):
        connected, _ = await comm.connect(timeout=5)
        assert not connected

    def attempts():
        return {(a.charge_point_id, a.reason) for a in ConnectionAttempt.objects.filter(
            charge_point_id__in=[charger_id, unknown])}

    logged = await in_schema("public", attempts)
    assert (charger_id, "wrong-credentials") in logged
    assert (charger_id, "missing-credentials") in logged
    assert (unknown, "unknown-charger") in logged


async def test_refusals_are_rate_limited_to_one_row_per_window(charger_id):
    address = communicator(charger_id).scope["client"]
    for _ in range(4):
        comm = communicator(charger_id, password="nope")
        comm.scope["client"] = address
        connected, _ = await comm.connect(timeout=5)
        assert not connected
    rows = await in_schema("public", lambda: list(ConnectionAttempt.objects.filter(
        charge_point_id=charger_id, reason="wrong-credentials").values_list("attempts", flat=True)))
    assert rows == [4]


async def test_removed_charger_is_refused(charger_id, world):
    await in_schema(world.maple.schema_name, lambda: ChargePoint.objects.filter(
        charge_point_id=charger_id).update(removed_at=timezone.now()))
    connected, _ = await communicator(charger_id).connect(timeout=5)
    assert not connected


async def test_charger_of_one_building_cannot_use_another_buildings_password(new_charger, world):
    harbor_id = await sync_to_async(new_charger)(world.harbor_view)
    # TEST-MAPLE-1's password is the same string, but it is not this charger's registration.
    connected, _ = await communicator(harbor_id, username="TEST-MAPLE-1").connect(timeout=5)
    assert not connected


async def test_second_connection_replaces_the_first(charger_id):
    first = communicator(charger_id)
    assert (await first.connect(timeout=5))[0]
    second = communicator(charger_id)
    assert (await second.connect(timeout=5))[0]
    closed = await first.receive_output(timeout=5)
    assert closed["type"] == "websocket.close"
    reply = await FakeCharger(second).call("Heartbeat", {})
    assert reply[0] == 3
    await second.disconnect()


async def test_url_id_is_matched_case_insensitively(charger_id):
    comm = communicator(charger_id.lower(), username=charger_id.lower())
    connected, _ = await comm.connect(timeout=5)
    assert connected
    reply = await FakeCharger(comm).call("Heartbeat", {})
    assert json.dumps(reply)
    await comm.disconnect()


async def test_unknown_charger_on_a_buildings_own_host_is_shown_to_that_building(world, committed):
    from apps.core.selectors import refused_connections

    on_maple, elsewhere = f"NEW-{uuid.uuid4().hex[:8]}", f"NEW-{uuid.uuid4().hex[:8]}"
    comm = communicator(on_maple)
    comm.scope["headers"] = [*comm.scope["headers"], (b"host", b"Maple-Court.localhost:8000")]
    assert not (await comm.connect(timeout=5))[0]
    comm = communicator(elsewhere)
    comm.scope["headers"] = [*comm.scope["headers"], (b"host", b"charging.example.com")]
    assert not (await comm.connect(timeout=5))[0]

    rows = await in_schema("public", lambda: {a.charge_point_id: (a.reason, a.condominium_id) for a in
                                              ConnectionAttempt.objects.filter(charge_point_id__in=[on_maple, elsewhere])})
    assert rows == {on_maple: ("unknown-charger", world.maple.pk), elsewhere: ("unknown-charger", None)}
    # The managers of Maple Court see it on the building's page; Oak Tower's do not.
    maple_ids = {a.charge_point_id for a in await in_schema("public", refused_connections, world.maple)}
    oak_ids = {a.charge_point_id for a in await in_schema("public", refused_connections, world.oak)}
    assert on_maple in maple_ids and elsewhere not in maple_ids and on_maple not in oak_ids
