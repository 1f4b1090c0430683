"""Local authorization lists kept in sync: the real consumer, a charger that checks every SendLocalList,
and the sync task's code (plus one run in a real Celery worker)."""

from __future__ import annotations

import asyncio
import uuid

from asgiref.sync import sync_to_async

from apps.alerts.models import Alert
from apps.buildings import services as buildings
from apps.buildings.models import IdTag, Resident
from apps.charging.local_lists import local_list_digest, local_list_entries
from apps.charging.models import ChargePoint
from apps.core.tenants import in_schema, run_in_schema
from apps.ocpp import local_list, tasks
from tests import factories
from tests.helpers import async_wait_for
from tests.ocpp.charger import FakeCharger, LocalListMemory
from tests.ocpp.conftest import communicator
from tests.servers import CeleryWorker


async def connect(charge_point_id: str, memory: LocalListMemory):
    comm = communicator(charge_point_id)
    assert (await comm.connect(timeout=5))[0]
    charger = FakeCharger(comm, answers=memory.answers())
    assert (await charger.boot())[2]["status"] == "Accepted"
    await charger.settle(0.5)  # GetConfiguration and the metering changes
    return comm, charger


async def run_sync(schema_name: str, charger: FakeCharger, charge_point_id: str) -> dict[str, str]:
    pk = await run_in_schema(schema_name, lambda: ChargePoint.objects.get(charge_point_id=charge_point_id).pk)
    pump = asyncio.ensure_future(charger.settle(30))
    try:
        # What the Celery worker runs; in a thread of its own, as in the worker.
        return await sync_to_async(tasks.sync_local_lists, thread_sensitive=False)(schema_name, [pk])
    finally:
        pump.cancel()


def _household(world) -> tuple[int, list[str]]:
    suffix = uuid.uuid4().hex[:8].upper()
    tags = [f"LL{suffix}{n}" for n in range(3)]
    user = factories.resident(world.maple, f"ll-{suffix.lower()}@maple.test", f"L{suffix}", id_tags=tuple(tags))
    with in_schema(world.maple.schema_name):
        return Resident.objects.get(user=user).pk, tags


async def charger_row(schema_name: str, charge_point_id: str) -> ChargePoint:
    return await run_in_schema(schema_name, ChargePoint.objects.get, charge_point_id=charge_point_id)


async def test_full_then_differential_updates_in_calls_the_charger_accepts(maple_schema, charger_id, world):
    resident_id, tags = await sync_to_async(_household)(world)
    memory = LocalListMemory(max_length=1000, send_max_length=3)
    comm, charger = await connect(charger_id, memory)

    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "full"}
    expected = await run_in_schema(maple_schema, local_list_entries)
    assert memory.entries == expected and memory.violations == []
    assert memory.updates[0][0] == "Full" and {u[0] for u in memory.updates[1:]} <= {"Differential"}
    assert all(n <= 3 for _, _, n in memory.updates)
    assert len(memory.updates) == -(-len(expected) // 3)
    cp = await charger_row(maple_schema, charger_id)
    assert cp.local_list_version == memory.version and cp.local_list_status == "synced"
    assert cp.local_list_entries == expected and cp.local_list_hash == local_list_digest(expected)

    # A card blocked, a card lost, a new card, a resident overdue: one differential call.
    sent = len(memory.updates)
    await run_in_schema(maple_schema, buildings.id_tag_set_status, id_tag=tags[0], status=IdTag.Status.BLOCKED)
    await run_in_schema(maple_schema, buildings.id_tag_set_status, id_tag=tags[1], status=IdTag.Status.LOST)
    await run_in_schema(maple_schema, buildings.id_tag_add, resident_id=resident_id, id_tag=tags[2] + "N")
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "differential"}
    assert memory.updates[sent:] == [("Differential", memory.version, 3)]
    assert memory.entries[tags[0]]["status"] == "Blocked" and memory.entries[tags[1]]["status"] == "Blocked"
    assert memory.entries[tags[2] + "N"]["status"] == "Accepted"
    assert memory.entries == await run_in_schema(maple_schema, local_list_entries)

    # Nothing changed: nothing sent but the version check.
    sent = len(memory.updates)
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "unchanged"}
    assert len(memory.updates) == sent
    assert memory.violations == []
    await comm.disconnect()


async def test_version_mismatch_falls_back_to_full_and_an_unknown_list_gets_a_full_update(
    maple_schema, charger_id, world
):
    resident_id, tags = await sync_to_async(_household)(world)
    # Another central system left a list behind: version 40, one stranger's card.
    memory = LocalListMemory(max_length=1000, send_max_length=50, version=40,
                             entries={"STRANGER": {"status": "Accepted"}})
    comm, charger = await connect(charger_id, memory)
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "full"}
    assert "STRANGER" not in memory.entries and memory.version > 40 and memory.violations == []

    await run_in_schema(maple_schema, buildings.resident_mark_overdue, resident_id=resident_id,
                    overdue_since=__import__("datetime").date(2026, 11, 1), reason="unpaid")
    memory.refuse = ["VersionMismatch"]
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "full-fallback"}
    assert [u[0] for u in memory.updates[-2:]] == ["Differential", "Full"]
    assert all(memory.entries[tag]["status"] == "Blocked" for tag in tags)
    cp = await charger_row(maple_schema, charger_id)
    assert cp.local_list_status == "synced" and "VersionMismatch" in cp.local_list_note
    assert cp.local_list_version == memory.version

    memory.refuse = ["Failed", "Failed"]  # the differential and the fallback both fail
    await run_in_schema(maple_schema, buildings.resident_restore_standing, resident_id=resident_id)
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "failed"}
    cp = await charger_row(maple_schema, charger_id)
    assert cp.local_list_status == "failed" and "Failed" in cp.local_list_note
    # The building's managers see it; the next successful sync resolves it.
    alert = await run_in_schema(maple_schema, Alert.objects.get, kind="local_list_failed", charge_point_id=charger_id,
                            resolved_at__isnull=True)
    assert "Failed" in alert.message
    # Refused calls changed nothing on the charger: the next sync goes on from what it holds.
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "differential"}
    assert memory.entries == await run_in_schema(maple_schema, local_list_entries)
    alert = await run_in_schema(maple_schema, Alert.objects.get, pk=alert.pk)
    assert alert.resolved_at is not None
    await comm.disconnect()


async def test_list_longer_than_the_charger_holds_keeps_the_working_cards(maple_schema, charger_id, world):
    await sync_to_async(_household)(world)
    memory = LocalListMemory(max_length=2, send_max_length=1)
    comm, charger = await connect(charger_id, memory)
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "full"}
    assert len(memory.entries) == 2 and memory.violations == []
    assert all(info["status"] == "Accepted" for info in memory.entries.values())
    assert "left out" in (await charger_row(maple_schema, charger_id)).local_list_note
    await comm.disconnect()


async def test_not_supported_is_recorded_and_nothing_is_sent(maple_schema, charger_id):
    memory = LocalListMemory()
    memory.version = -1  # GetLocalListVersion -1: no local list
    comm, charger = await connect(charger_id, memory)
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "not-supported"}
    assert memory.updates == []
    assert (await charger_row(maple_schema, charger_id)).local_list_status == "not-supported"
    await comm.disconnect()


async def test_two_workers_at_once_one_syncs_and_the_list_ends_right(maple_schema, charger_id, world):
    await sync_to_async(_household)(world)
    memory = LocalListMemory(max_length=1000, send_max_length=2)
    comm, charger = await connect(charger_id, memory)
    pk = (await charger_row(maple_schema, charger_id)).pk
    pump = asyncio.ensure_future(charger.settle(30))
    outcomes = await asyncio.gather(*(
        sync_to_async(local_list.sync_charger, thread_sensitive=False)(maple_schema, pk) for _ in range(2)))
    pump.cancel()
    # One worker holds the list and sends it; the other finds it held ("busy") and leaves its request to the
    # holder, which goes round once more and reports the last round ("unchanged"), or comes after the holder
    # let go and finds nothing to send. Either way exactly one Full update (in calls of two) reached the charger.
    assert sorted(outcomes) in (["busy", "full"], ["busy", "unchanged"], ["full", "unchanged"]), outcomes
    expected = await run_in_schema(maple_schema, local_list_entries)
    assert [u[0] for u in memory.updates] == ["Full"] + ["Differential"] * (len(memory.updates) - 1)
    assert len(memory.updates) == -(-len(expected) // 2)
    assert memory.violations == []
    assert memory.entries == expected
    cp = await charger_row(maple_schema, charger_id)
    assert cp.local_list_version == memory.version and cp.local_list_entries == expected
    assert cp.local_list_claimed_until is None and not cp.local_list_dirty
    await comm.disconnect()


async def test_boot_brings_the_list_up_to_date_through_a_real_celery_worker(
    maple_schema, charger_id, test_database_url
):
    worker = CeleryWorker(test_database_url, purge=False).start()
    try:
        memory = LocalListMemory(max_length=1000, send_max_length=20)
        comm, charger = await connect(charger_id, memory)

        async def synced() -> bool:
            await charger.settle(0.5)  # answers the worker's calls meanwhile
            return (await charger_row(maple_schema, charger_id)).local_list_status == "synced"

        await async_wait_for(synced, 60, interval=0, what="the list synced by the worker")
        assert memory.updates and memory.updates[0][0] == "Full" and memory.violations == []
        assert memory.entries == await run_in_schema(maple_schema, local_list_entries)
        await comm.disconnect()
    finally:
        worker.stop()


async def test_a_charger_that_accepts_but_keeps_its_old_version_gets_a_full_update_next_time(
    maple_schema, charger_id, world
):
    await sync_to_async(_household)(world)
    memory = LocalListMemory(max_length=1000, send_max_length=100)
    comm, charger = await connect(charger_id, memory)
    charger.answers["GetLocalListVersion"] = {"listVersion": 0}  # firmware that never reports its version
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "failed"}
    cp = await charger_row(maple_schema, charger_id)
    assert "the charger reports 0" in cp.local_list_note
    assert cp.local_list_version == 0 and cp.local_list_entries == {}  # nothing assumed: Full next time
    del charger.answers["GetLocalListVersion"]
    charger.answers.update(memory.answers())
    assert await run_sync(maple_schema, charger, charger_id) == {charger_id: "full"}
    await comm.disconnect()
