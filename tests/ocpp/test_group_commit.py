"""Group commit: a charger's answer leaves only once what it acknowledges is in the database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, ProgrammingError, connection
from django.utils import timezone

from apps.charging.models import ChargePoint, MeterValue
from apps.core.tenants import run_in_schema
from apps.ocpp import framelog
from apps.ocpp.models import OcppFrame
from tests.helpers import iso
from tests.ocpp.charger import FakeCharger
from tests.ocpp.conftest import communicator


def meter_values(at: datetime, wh: int, tx: int | None = None) -> dict:
    payload = {"connectorId": 1, "meterValue": [{"timestamp": iso(at), "sampledValue": [
        {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "16.0", "measurand": "Current.Import", "phase": "L1", "unit": "A"}]}]}
    if tx is not None:
        payload["transactionId"] = tx
    return payload


def stored(charge_point_id: str) -> tuple[int, set[str]]:
    """Meter values and the unique ids of incoming CALL frames, read on another connection."""
    values = MeterValue.objects.filter(charge_point__charge_point_id=charge_point_id).count()
    calls = set(OcppFrame.objects.filter(charge_point_id=charge_point_id, direction="in", message_type=2)
                .values_list("unique_id", flat=True))
    return values, calls


async def test_the_answer_leaves_only_after_the_rows_are_committed(maple_schema, connected):
    at = datetime.now(UTC).replace(microsecond=0)
    reply = await connected.call("MeterValues", meter_values(at, 1000), unique_id="mv-1")
    # The very moment the CALLRESULT is here, another connection sees the readings and the frame.
    values, calls = await run_in_schema(maple_schema, stored, connected.charge_point_id)
    assert reply[0] == 3
    assert values == 2 and "mv-1" in calls
    reply = await connected.call("Heartbeat", {}, unique_id="hb-1")
    _, calls = await run_in_schema(maple_schema, stored, connected.charge_point_id)
    assert reply[0] == 3 and "hb-1" in calls


def _refuse_meter_values_of(charge_point_id: str) -> str:
    """A trigger that makes inserting this charger's meter values fail, like a table gone bad."""
    return _on_meter_values_of(charge_point_id, "refuse", "RAISE EXCEPTION 'meter values unavailable (test)'")


def _slow_meter_values_of(charge_point_id: str) -> str:
    """A trigger that makes inserting this charger's meter values take 0.3 s, like a disk that stalls."""
    return _on_meter_values_of(charge_point_id, "slow", "PERFORM pg_sleep(0.3)")


def _on_meter_values_of(charge_point_id: str, what: str, statement: str) -> str:
    pk = ChargePoint.objects.get(charge_point_id=charge_point_id).pk
    name = f"test_{what}_mv_{pk}"
    schema = connection.schema_name  # run_in_schema's: the building's own
    with connection.cursor() as cursor:
        cursor.execute(f"""
            CREATE FUNCTION {schema}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.charge_point_id = {pk} THEN {statement}; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON {schema}.charging_metervalue
              FOR EACH ROW EXECUTE FUNCTION {schema}.{name}();
        """)
    return name


def _drop(name: str) -> None:
    schema = connection.schema_name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {schema}.charging_metervalue;"
                       f" DROP FUNCTION IF EXISTS {schema}.{name}();")


async def test_a_failed_write_is_not_acknowledged_and_the_retry_counts_once(maple_schema, connected, new_charger):
    other_id = await sync_to_async(new_charger)()
    other_comm = communicator(other_id)
    assert (await other_comm.connect(timeout=5))[0]
    other = FakeCharger(other_comm)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    assert (await connected.call("MeterValues", meter_values(at, 1000)))[0] == 3  # acknowledged before
    trigger = await run_in_schema(maple_schema, _refuse_meter_values_of, connected.charge_point_id)
    try:
        # Both in one batch: the broken charger's rows fail, the other charger's are stored and acknowledged.
        refused, accepted = await asyncio.gather(
            connected.call("MeterValues", meter_values(at + timedelta(minutes=1), 1100), unique_id="mv-fail"),
            other.call("MeterValues", meter_values(at + timedelta(minutes=1), 500)),
        )
        assert refused[0] == 4 and refused[2] == "InternalError", refused
        assert accepted[0] == 3, accepted
        values, _ = await run_in_schema(maple_schema, stored, connected.charge_point_id)
        assert values == 2  # what was acknowledged is there; nothing of the refused message
        assert (await run_in_schema(maple_schema, stored, other_id))[0] == 2
        # The connection survives the failure.
        assert (await connected.call("Heartbeat", {}))[0] == 3
    finally:
        await run_in_schema(maple_schema, _drop, trigger)

    # The charger sends the refused message again (and, having lost the answer, once more): stored once.
    for unique_id in ("mv-retry-1", "mv-retry-2"):
        reply = await connected.call("MeterValues", meter_values(at + timedelta(minutes=1), 1100), unique_id=unique_id)
        assert reply[0] == 3
    values, calls = await run_in_schema(maple_schema, stored, connected.charge_point_id)
    assert values == 4
    assert {"mv-retry-1", "mv-retry-2"} <= calls
    await other_comm.disconnect()


@pytest.mark.usefixtures("world", "committed")
async def test_a_schema_that_does_not_exist_fails_only_its_own_rows(maple_schema):
    writer = framelog.BatchWriter()
    cp_id = f"GC-{uuid.uuid4().hex[:8]}"
    frame = {"direction": "in", "raw": "[2, \"x\", \"Heartbeat\", {}]", "at": timezone.now(), "message_type": 2,
             "action": "Heartbeat", "unique_id": "x"}
    lost = writer.add_frame("no_such_schema", charge_point_id=cp_id, **frame)
    kept = writer.add_frame(maple_schema, charge_point_id=cp_id, **frame)
    await kept
    with pytest.raises(Exception, match=r"no_such_schema|does not exist"):
        await lost
    assert await run_in_schema(maple_schema, lambda: OcppFrame.objects.filter(charge_point_id=cp_id).count()) == 1


@pytest.mark.usefixtures("world", "committed")
async def test_a_failure_that_is_not_a_bad_row_leaves_the_next_batch_a_new_connection(maple_schema):
    writer = framelog.BatchWriter()
    loop = asyncio.get_running_loop()
    cp_id = f"GC-{uuid.uuid4().hex[:8]}"

    def frame(raw: str) -> dict:
        return {"direction": "in", "raw": raw, "at": timezone.now(), "message_type": 2, "action": "Heartbeat",
                "unique_id": uuid.uuid4().hex}

    await writer.add_frame(maple_schema, charge_point_id=cp_id, **frame("[2,\"a\",\"Heartbeat\",{}]"))
    pid = await loop.run_in_executor(framelog._executor, _writer_backend_pid)
    # A bad row (a message type below 0: the column's check): refused; the connection is not to blame, kept.
    with pytest.raises(IntegrityError, match="message_type"):
        await writer.add_frame(maple_schema, charge_point_id=cp_id, **{**frame("[2,\"b\",\"Heartbeat\",{}]"),
                                                                      "message_type": -1})
    assert await loop.run_in_executor(framelog._executor, _writer_backend_pid) == pid
    # A failure of another kind: the connection's state is not trusted; the next batch runs on a new one.
    with pytest.raises(ProgrammingError, match="does not exist"):
        await writer.add_frame("no_such_schema", charge_point_id=cp_id, **frame("[2,\"c\",\"Heartbeat\",{}]"))
    assert await loop.run_in_executor(framelog._executor, _writer_backend_pid) != pid
    await writer.add_frame(maple_schema, charge_point_id=cp_id, **frame("[2,\"d\",\"Heartbeat\",{}]"))
    stored = await run_in_schema(maple_schema, lambda: list(
        OcppFrame.objects.filter(charge_point_id=cp_id).values_list("raw", flat=True)))
    assert sorted(stored) == ['[2,"a","Heartbeat",{}]', '[2,"d","Heartbeat",{}]']
    await writer.flush()


def _writer_backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> None:
    """End that server process and wait until it is gone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
        assert cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        assert cursor.fetchone()[0] == 0


async def test_a_connection_that_dropped_between_batches_is_replaced_without_an_error(maple_schema, connected):
    at = datetime.now(UTC).replace(microsecond=0)
    assert (await connected.call("MeterValues", meter_values(at, 1000)))[0] == 3
    # The writer keeps its connection between batches; the server drops it (restart, idle timeout...).
    pid = await asyncio.get_running_loop().run_in_executor(framelog._executor, _writer_backend_pid)
    await run_in_schema(maple_schema, _terminate, pid)
    reply = await connected.call("MeterValues", meter_values(at + timedelta(minutes=1), 1100))
    assert reply[0] == 3, reply
    assert (await run_in_schema(maple_schema, stored, connected.charge_point_id))[0] == 4
    assert await asyncio.get_running_loop().run_in_executor(framelog._executor, _writer_backend_pid) != pid


async def test_a_slow_batch_is_logged_as_the_thread_and_the_event_loop_saw_it(maple_schema, connected, caplog):
    """Every answer of a batch waits for its commit, so a commit that stalls (a disk's flush) delays them all:
    such a batch is logged, from the database thread and from the event loop, with its chargers and time."""
    trigger = await run_in_schema(maple_schema, _slow_meter_values_of, connected.charge_point_id)
    try:
        with caplog.at_level("WARNING", logger="apps.ocpp.framelog"):
            started = asyncio.get_running_loop().time()
            reply = await connected.call("MeterValues", meter_values(datetime.now(UTC), 2000), unique_id="mv-slow")
            waited = asyncio.get_running_loop().time() - started
    finally:
        await run_in_schema(maple_schema, _drop, trigger)
    assert reply[0] == 3 and waited >= 0.3
    logged = [r.getMessage() for r in caplog.records if r.name == "apps.ocpp.framelog"]
    assert any(m.startswith("group commit: writing a batch of 1 chargers' rows took") and "database thread" in m
               for m in logged), logged
    assert any(m.startswith("group commit: a batch of 1 chargers' rows took") and "event loop" in m
               for m in logged), logged
