"""A session that stops over OCPP is priced once, on commit, with the version in force at its start; a
retried stop, a second call and two calls at the same time still make one charge."""

from __future__ import annotations

import sys
import threading
import time as clock
import uuid
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection, transaction

from apps.billing.models import SessionCharge
from apps.billing.services import session_price
from apps.buildings.models import Resident
from apps.charging.models import ChargePoint, ChargingSession
from apps.core.tenants import in_schema, run_in_schema
from tests import factories
from tests.helpers import iso

LA = ZoneInfo("America/Los_Angeles")
TAG = "set-per-test"


@pytest.fixture(autouse=True)
def _own_resident(world, committed, monkeypatch):
    tag = f"B{uuid.uuid4().hex[:12].upper()}"
    factories.resident(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    monkeypatch.setattr(sys.modules[__name__], "TAG", tag)


def la(*args):
    return datetime(*args, tzinfo=LA)


async def start(charger, at, meter, tag=None, connector=1):
    reply = await charger.call("StartTransaction", {"connectorId": connector, "idTag": tag or TAG,
                                                    "meterStart": meter, "timestamp": iso(at)})
    assert reply[0] == 3, reply
    return reply[2]["transactionId"]


async def stop(charger, tx, meter, at):
    reply = await charger.call("StopTransaction", {"transactionId": tx, "meterStop": meter, "timestamp": iso(at)})
    assert reply[0] == 3, reply
    return reply


async def register(charger, tx, at, wh, connector=1):
    reply = await charger.call("MeterValues", {"connectorId": connector, "transactionId": tx, "meterValue": [
        {"timestamp": iso(at), "sampledValue": [{"value": str(wh), "measurand": "Energy.Active.Import.Register",
                                                 "unit": "Wh"}]}]})
    assert reply[0] == 3, reply


def charges_of(schema, tx):
    with in_schema(schema):
        return list(SessionCharge.objects.filter(session__transaction_id=tx).select_related("tariff_version__tariff"))


async def charges(schema, tx):
    return await run_in_schema(schema, lambda: charges_of(connection.schema_name, tx))


async def test_a_stopped_session_is_priced_once_with_the_tariff_in_force(maple_schema, connected):
    tx = await start(connected, la(2026, 3, 10, 9), 1_000_000)
    assert await charges(maple_schema, tx) == []  # open: nothing to price yet
    await stop(connected, tx, 1_012_345, la(2026, 3, 10, 12))
    [charge] = await charges(maple_schema, tx)
    assert (charge.status, charge.total, charge.currency, charge.energy_wh) == ("priced", Decimal("3.95"), "USD", 12_345)
    assert (charge.tariff_version.tariff.code, charge.tariff_version.number) == ("residents", 1)
    assert charge.period == date(2026, 3, 1)
    assert [(line["window"], line["amount"]) for line in charge.lines] == [("day", "3.95")]
    # The charger did not get the answer and sends the same StopTransaction again: still one charge.
    await stop(connected, tx, 1_012_345, la(2026, 3, 10, 12))
    again = await charges(maple_schema, tx)
    assert [c.pk for c in again] == [charge.pk]
    # Asking again returns the charge kept, unchanged.
    same = await run_in_schema(maple_schema, lambda: session_price(session_pk=charge.session_id))
    assert (same.pk, same.priced_at) == (charge.pk, charge.priced_at)


async def test_a_night_session_ending_in_february_and_idle_time_from_the_readings(maple_schema, connected):
    tx = await start(connected, la(2026, 1, 31, 23), 50_000)
    await register(connected, tx, la(2026, 2, 1, 1), 58_000)
    # Full at 02:00 (the register stops moving), unplugged 03:15: 75 idle minutes, 45 after the grace.
    await register(connected, tx, la(2026, 2, 1, 2), 62_000)
    await register(connected, tx, la(2026, 2, 1, 3), 62_000)
    await stop(connected, tx, 62_000, la(2026, 2, 1, 3, 15))
    [charge] = await charges(maple_schema, tx)
    assert charge.period == date(2026, 2, 1)
    assert [(line["kind"], line["quantity"], line["amount"]) for line in charge.lines] == [
        ("ENERGY", "12", "2.16"), ("PARKING_TIME", "45.0000", "4.50")]
    assert charge.total == Decimal("6.66")


async def test_implausible_energy_is_held_and_not_billed(maple_schema, connected):
    tx = await start(connected, la(2026, 3, 10, 9), 0)
    await stop(connected, tx, 910_031, la(2026, 3, 10, 11))  # 2 h on a 7.36 kW connector
    [charge] = await charges(maple_schema, tx)
    assert (charge.status, charge.total, charge.lines) == ("held", Decimal("0"), [])
    assert "implausible" in charge.hold_reason


async def test_a_missing_meter_stop_uses_the_last_reading(maple_schema, connected):
    tx = await start(connected, la(2026, 3, 10, 10), 200_000)
    await register(connected, tx, la(2026, 3, 10, 11, 30), 206_500)
    await stop(connected, tx, -1, la(2026, 3, 10, 12))  # a placeholder meterStop
    [charge] = await charges(maple_schema, tx)
    assert (charge.status, charge.total, charge.energy_source) == ("priced", Decimal("2.08"), "last meter value")


async def test_a_visitor_pays_the_visitors_tariff(maple_schema, connected):
    tx = await start(connected, la(2026, 3, 10, 14), 0, tag="UNKNOWN-CARD-1")
    await stop(connected, tx, 5000, la(2026, 3, 10, 15, 1))
    [charge] = await charges(maple_schema, tx)
    assert (charge.tariff_version.tariff.code, charge.total) == ("visitors", Decimal("3.00"))


async def test_a_zero_energy_session_costs_nothing(maple_schema, connected):
    tx = await start(connected, la(2026, 3, 10, 14), 4000)
    await stop(connected, tx, 4000, la(2026, 3, 10, 14, 10))
    [charge] = await charges(maple_schema, tx)
    assert (charge.status, charge.total, charge.lines) == ("priced", Decimal("0"), [])


def test_two_pricers_at_the_same_time_make_one_charge(world, committed, maple_schema, charger_id):
    """The first holds its new charge uncommitted; the second computes too, waits on the unique session
    column, then finds the first one's charge instead of making a second."""
    with in_schema(maple_schema):
        cp = ChargePoint.objects.get(charge_point_id=charger_id)
        session = ChargingSession.objects.create(  # stored without the stop event: not priced yet
            charge_point=cp, connector=cp.connectors.get(connector_id=1), connector_number=1,
            started_at=la(2026, 3, 10, 9), meter_start_wh=0, stopped_at=la(2026, 3, 10, 10), meter_stop_wh=5000,
            energy_wh=5000, energy_source="register",
        )
    results: dict[str, int] = {}
    second_started = threading.Event()

    def second() -> None:
        try:
            with in_schema(maple_schema):
                second_started.set()
                results["second"] = session_price(session_pk=session.pk).pk
        finally:
            connection.close()

    with in_schema(maple_schema), transaction.atomic():
        first = session_price(session_pk=session.pk)
        thread = threading.Thread(target=second)
        thread.start()
        second_started.wait(5)
        clock.sleep(0.5)  # the second is now blocked on the first's uncommitted row
        assert thread.is_alive()
    thread.join(10)
    assert results["second"] == first.pk
    with in_schema(maple_schema):
        assert SessionCharge.objects.filter(session=session).count() == 1
        assert SessionCharge.objects.get(session=session).total == Decimal("2.40")  # no resident: a visitor's hour


def test_sessions_left_unpriced_are_caught_up_once(world, committed, maple_schema, charger_id):
    from apps.billing.tasks import price_pending_sessions

    with in_schema(maple_schema):
        cp = ChargePoint.objects.get(charge_point_id=charger_id)
        session = ChargingSession.objects.create(  # stored without the stop event, as if pricing had failed
            charge_point=cp, connector=cp.connectors.get(connector_id=1), connector_number=1,
            resident=Resident.objects.get(id_tags__id_tag=TAG),
            started_at=la(2026, 3, 10, 22), meter_start_wh=0, stopped_at=la(2026, 3, 10, 23), meter_stop_wh=5000,
            energy_wh=5000, energy_source="register",
        )
    assert price_pending_sessions() >= 1
    assert price_pending_sessions() == 0
    with in_schema(maple_schema):
        charge = SessionCharge.objects.get(session=session)
        assert (charge.status, charge.total) == ("priced", Decimal("0.90"))


async def test_a_pricing_failure_never_fails_the_stop(maple_schema, connected, caplog):
    """A tariff stored broken (written past the services): the charger still gets its answer, the session
    is stored as stopped, and the failure is logged for the catch-up to retry."""
    from apps.billing.models import Tariff, TariffAssignment, TariffVersion

    def break_the_connector_tariff():
        connector = ChargePoint.objects.get(charge_point_id=connected.charge_point_id).connectors.get(connector_id=1)
        tariff = Tariff.objects.create(code=f"broken-{connector.pk}", name="Broken")
        TariffVersion.objects.create(tariff=tariff, number=1, effective_from=la(2026, 1, 1), currency="USD",
                                     document={"elements": "not a list"}, published_at=la(2026, 1, 1))
        TariffAssignment.objects.create(tariff=tariff, audience="everyone", connector=connector)

    await run_in_schema(maple_schema, break_the_connector_tariff)
    tx = await start(connected, la(2026, 3, 10, 9), 0)
    reply = await stop(connected, tx, 3000, la(2026, 3, 10, 10))
    assert reply[0] == 3  # answered
    session = await run_in_schema(maple_schema, lambda: ChargingSession.objects.get(
        charge_point__charge_point_id=connected.charge_point_id, transaction_id=tx))
    assert session.stopped_at == la(2026, 3, 10, 10) and session.energy_wh == 3000
    assert await charges(maple_schema, tx) == []
    assert "give at least one element" in caplog.text

    def unassign():  # committed rows: leave no broken tariff on a connector for the tests that follow
        TariffAssignment.objects.filter(tariff__code__startswith="broken-").delete()

    await run_in_schema(maple_schema, unassign)
