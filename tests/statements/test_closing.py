"""Closing a building's month.

The rule: when a building's month has ended in its own time zone, each resident with priced sessions or
a service fee gets one finalized statement; a session is billed once, on the statement of the month it
ended in, or on the next one as a prior-period line if it was priced after its month closed; held
sessions wait; closing again, or twice at once, changes nothing; another building is never touched.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.billing import services as billing
from apps.billing.models import SessionCharge, Tariff
from apps.buildings.models import Resident
from apps.charging.models import ChargePoint, ChargingSession
from apps.core.tenants import in_schema
from apps.statements.closing import period_close
from apps.statements.models import BilledCharge, BillingPeriod, Statement, StatementLine
from apps.statements.services import StatementRefused
from tests import factories

LA = ZoneInfo("America/Los_Angeles")


def la(*args: int) -> datetime:
    return datetime(*args, tzinfo=LA)


def _resident(condo) -> Resident:
    user = factories.resident(condo, f"c-{uuid.uuid4().hex[:8]}@maple.test", "101")
    with in_schema(condo.schema_name):
        return Resident.objects.select_related("user", "unit").get(user=user)


def _session(resident: Resident | None, start: datetime, stop: datetime, wh: int, *, meter: int = 1_000_000,
             review: str = "") -> SessionCharge:
    """A stopped session on Maple Court's TEST-MAPLE-1 #1, priced by the billing service."""
    charger = ChargePoint.objects.get(charge_point_id="TEST-MAPLE-1")
    session = ChargingSession.objects.create(
        charge_point=charger, connector=charger.connectors.get(connector_id=1), connector_number=1,
        transaction_id=int(uuid.uuid4().int % 2_000_000_000), id_tag="T", resident=resident, started_at=start,
        start_received_at=start, meter_start_wh=meter, stopped_at=stop, stop_received_at=stop,
        meter_stop_wh=meter + wh, energy_wh=wh, energy_source=ChargingSession.EnergySource.REGISTER,
        needs_review=bool(review), review_reason=review,
    )
    return billing.session_price(session_pk=session.pk)


@pytest.mark.django_db
def test_a_month_closes_into_one_finalized_statement_per_resident_and_only_once(world):
    alice, bob = _resident(world.maple), _resident(world.maple)
    with in_schema(world.maple.schema_name):
        day = _session(alice, la(2026, 4, 3, 12), la(2026, 4, 3, 14), 12_345)  # $3.95 at the day rate
        night = _session(alice, la(2026, 4, 30, 23), la(2026, 5, 1, 5), 12_000)  # ends in May: May's statement
        bobs = _session(bob, la(2026, 4, 10, 9), la(2026, 4, 10, 10), 5_000)  # $1.60
        held = _session(bob, la(2026, 4, 11, 9), la(2026, 4, 11, 10), 5_000, review="meter reset not understood")
        assert held.status == SessionCharge.Status.HELD
        with pytest.raises(StatementRefused, match="not over yet"):
            period_close(month=date(2026, 4, 1), now=la(2026, 4, 30, 23, 59))

        result = period_close(month=date(2026, 4, 1), now=la(2026, 5, 1, 0, 5))
        assert result.closed_now and result.sessions_billed == 2 and result.sessions_held >= 1
        mine = {s.resident_id: s for s in Statement.objects.filter(resident__in=[alice, bob])}
        assert set(mine) == {alice.pk, bob.pk}
        a, b = mine[alice.pk], mine[bob.pk]
        assert a.total == Decimal("3.950") and b.total == Decimal("1.600")
        assert a.status == Statement.Status.OPEN and a.number.startswith("S-") and a.period.month == date(2026, 4, 1)
        assert a.issued_on == date(2026, 5, 1) and a.due_on == date(2026, 5, 16)
        [line] = a.lines.all()
        assert (line.kind, line.session_id, line.energy_wh, line.duration_s) == (
            StatementLine.Kind.SESSION, day.session_id, 12_345, 7200)
        assert "day" in line.window and line.amount == Decimal("3.950")
        assert BilledCharge.objects.filter(charge__in=[day, bobs]).count() == 2
        assert not BilledCharge.objects.filter(charge__in=[night, held]).exists()

        again = period_close(month=date(2026, 4, 1), now=la(2026, 5, 2))
        assert not again.closed_now
        assert Statement.objects.filter(resident__in=[alice, bob]).count() == 2

        may = period_close(month=date(2026, 5, 1), now=la(2026, 6, 1, 0, 1))
        assert may.closed_now
        [may_statement] = Statement.objects.filter(resident=alice, period__month=date(2026, 5, 1))
        assert may_statement.total == Decimal("2.160")  # the spec's night example: 12 kWh x $0.18
        assert not Statement.objects.filter(resident=bob, period__month=date(2026, 5, 1)).exists()


@pytest.mark.django_db
def test_a_session_priced_after_its_month_closed_goes_on_the_next_statement_as_prior_period(world):
    alice = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        _session(alice, la(2026, 6, 5, 12), la(2026, 6, 5, 13), 1_000)
        period_close(month=date(2026, 6, 1), now=la(2026, 7, 1, 1))
        late = _session(alice, la(2026, 6, 29, 12), la(2026, 6, 29, 13), 2_000)  # an offline charger, sent in July
        assert late.period == date(2026, 6, 1)
        _session(alice, la(2026, 7, 2, 12), la(2026, 7, 2, 13), 3_000)
        result = period_close(month=date(2026, 7, 1), now=la(2026, 8, 1, 1))
        assert result.prior_period_sessions == 1
        july = Statement.objects.get(resident=alice, period__month=date(2026, 7, 1))
        lines = {line.session_id: line for line in july.lines.all()}
        assert lines[late.session_id].prior_period is True
        assert sum(line.amount for line in lines.values()) == july.subtotal == Decimal("1.600")
        june = Statement.objects.get(resident=alice, period__month=date(2026, 6, 1))
        assert late.session_id not in {line.session_id for line in june.lines.all()}  # June never changes


@pytest.mark.django_db
def test_the_monthly_service_fee_is_prorated_by_days_of_access(world):
    with in_schema(world.maple.schema_name):
        tariff = Tariff.objects.get(code="residents")
        billing.tariff_publish_version(
            tariff=tariff, effective_from=la(2026, 8, 1), currency="USD", now=la(2026, 7, 1),
            document={"elements": [{"price_components": [{"type": "ENERGY", "price": "0.32"}]}],
                      "monthly_fee": {"price": "31.00", "tax_rate": "0.10"}},
        )
    newcomer = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        Resident.objects.filter(pk=newcomer.pk).update(created_at=la(2026, 8, 22, 15))
        period_close(month=date(2026, 8, 1), now=la(2026, 9, 1))
        statement = Statement.objects.get(resident=newcomer, period__month=date(2026, 8, 1))
        [fee] = statement.lines.all()
        assert fee.kind == StatementLine.Kind.SERVICE_FEE and fee.quantity == 10  # August 22 to 31
        assert (fee.amount, fee.tax) == (Decimal("10.000"), Decimal("1.000"))  # 31.00 x 10/31, plus 10 %
        assert statement.total == Decimal("11.000") and "10 of 31 days" in fee.description


@pytest.mark.django_db
def test_closing_one_building_leaves_the_others_alone(world):
    alice = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        _session(alice, la(2026, 9, 5, 12), la(2026, 9, 5, 13), 1_000)
        period_close(month=date(2026, 9, 1), now=la(2026, 10, 1, 1))
        assert Statement.objects.filter(resident=alice).count() == 1
    for other in (world.oak, world.harbor_view):
        with in_schema(other.schema_name):
            assert not BillingPeriod.objects.filter(month=date(2026, 9, 1)).exists()
            assert not Statement.objects.exists()


def test_two_workers_closing_the_same_month_at_once_make_it_once(world, committed):
    schema = world.maple.schema_name
    residents = [_resident(world.maple) for _ in range(3)]
    with in_schema(schema):
        for n, resident in enumerate(residents):
            _session(resident, la(2026, 3, 3 + n, 12), la(2026, 3, 3 + n, 13), 1_000 * (n + 1))
    results, errors = [], []
    start = threading.Barrier(2)

    def close() -> None:
        try:
            with in_schema(schema):
                start.wait()
                results.append(period_close(month=date(2026, 3, 1), now=la(2026, 4, 1, 2)))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=close) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(result.closed_now for result in results) == [False, True]
    with in_schema(schema):
        statements = Statement.objects.filter(resident__in=residents)
        assert statements.count() == 3
        assert BilledCharge.objects.filter(statement__in=statements).count() == 3


@pytest.mark.django_db
def test_the_close_period_command_says_what_it_did_and_refuses_bad_arguments(world, capsys):
    alice = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        _session(alice, la(2025, 11, 5, 12), la(2025, 11, 5, 13), 1_000)
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("close_period", "--condominium", "maple-court", "--period", "2025-13")
    with pytest.raises(CommandError, match="no building 'nowhere'"):
        call_command("close_period", "--condominium", "nowhere", "--period", "2025-11")
    future = datetime.now(UTC) + timedelta(days=40)
    with pytest.raises(CommandError, match="not over yet"):
        call_command("close_period", "--condominium", "maple-court", "--period", f"{future:%Y-%m}")
    call_command("close_period", "--condominium", "maple-court", "--period", "2025-11")
    assert "maple-court 2025-11:" in capsys.readouterr().out
    call_command("close_period", "--condominium", "maple-court", "--period", "2025-11")
    assert "already closed" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_beat_task_closes_each_building_once_after_its_local_month_end_then_mails_each_statement(
    world, smtp_inbox, django_capture_on_commit_callbacks
):
    from apps.statements import tasks
    from apps.tenancy.models import Condominium

    # The buildings were commissioned today; a building's months are closed from its first month on.
    Condominium.objects.update(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    alice = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        charge = _session(alice, la(2026, 10, 20, 12), la(2026, 10, 20, 14), 12_345)
    # 06:00 UTC on November 1st is 23:00 on October 31st in Los Angeles: October is not over there.
    tasks.close_due_months(now=datetime(2026, 11, 1, 6, tzinfo=UTC))  # closes September there
    with in_schema(world.maple.schema_name):
        assert not BillingPeriod.objects.filter(month=date(2026, 10, 1)).exists()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        made = tasks.close_due_months(now=datetime(2026, 11, 1, 7, 30, tzinfo=UTC))
    assert made["maple-court"] >= 1 and len(callbacks) >= 1
    assert tasks.close_due_months(now=datetime(2026, 11, 1, 8, tzinfo=UTC)).get("maple-court") is None
    with in_schema(world.maple.schema_name):
        statement = Statement.objects.get(billed_charges__charge=charge)
        assert tasks.deliver_statement.apply(args=(world.maple.schema_name, statement.pk)).get() is True
        assert tasks.deliver_statement.apply(args=(world.maple.schema_name, statement.pk)).get() is False
    [mail] = smtp_inbox.to(alice.user.email)
    assert statement.number in mail["Subject"]
    [pdf] = list(mail.iter_attachments())
    assert pdf.get_payload(decode=True).startswith(b"%PDF-")


@pytest.mark.django_db
def test_idle_time_after_charging_is_its_own_line(world):
    """The spec's example: charging complete at 01:00, unplugged at 02:15: 45 minutes after the grace, $4.50."""
    from apps.charging.models import MeterValue

    alice = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        charger = ChargePoint.objects.get(charge_point_id="TEST-MAPLE-1")
        start, stop = la(2026, 6, 9, 23), la(2026, 6, 10, 2, 15)
        session = ChargingSession.objects.create(
            charge_point=charger, connector=charger.connectors.get(connector_id=1), connector_number=1,
            transaction_id=int(uuid.uuid4().int % 2_000_000_000), id_tag="T", resident=alice, started_at=start,
            start_received_at=start, meter_start_wh=50_000, stopped_at=stop, stop_received_at=stop,
            meter_stop_wh=62_000, energy_wh=12_000, energy_source=ChargingSession.EnergySource.REGISTER)
        for at, wh in ((la(2026, 6, 10, 0), 58_000), (la(2026, 6, 10, 1), 62_000), (la(2026, 6, 10, 2), 62_000)):
            MeterValue.objects.create(charge_point=charger, connector_number=1, session=session,
                                      measurand="Energy.Active.Import.Register", unit="Wh", value=wh,
                                      normalized=wh, sampled_at=at, received_at=at)
        billing.session_price(session_pk=session.pk)
        period_close(month=date(2026, 6, 1), now=la(2026, 7, 1, 1))
        statement = Statement.objects.get(resident=alice, period__month=date(2026, 6, 1))
        lines = {line.kind: line for line in statement.lines.all()}
        assert set(lines) == {StatementLine.Kind.SESSION, StatementLine.Kind.IDLE}
        assert lines[StatementLine.Kind.IDLE].amount == Decimal("4.500")
        assert lines[StatementLine.Kind.IDLE].quantity == Decimal("45")
        assert lines[StatementLine.Kind.SESSION].amount == Decimal("2.160")  # 12 kWh at night, $0.18
        assert statement.total == Decimal("6.660")


@pytest.mark.django_db
def test_a_session_line_names_its_parking_spot_charger_and_connector_and_keeps_every_column(world):
    from apps.buildings.models import ParkingSpot

    alice = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        connector = ChargePoint.objects.get(charge_point_id="TEST-MAPLE-1").connectors.get(connector_id=1)
        connector.parking_spot = ParkingSpot.objects.create(label=f"P-{uuid.uuid4().hex[:4]}")
        connector.save(update_fields=["parking_spot"])
        charge = _session(alice, la(2026, 8, 3, 12), la(2026, 8, 3, 14), 12_345)  # $3.95 at the day rate
        result = period_close(month=date(2026, 8, 1), now=la(2026, 9, 1, 0, 5))
        assert (charge.status, result.closed_now, result.sessions_billed) == (SessionCharge.Status.PRICED, True, 1), charge.hold_reason
        [line] = Statement.objects.get(resident=alice, period__month=date(2026, 8, 1)).lines.all()
        session = charge.session
        assert line.connector_label == f"{connector.parking_spot.label} · TEST-MAPLE-1 #1"
        assert line.description == f"Charging session {session.transaction_id}"
        assert (line.position, line.kind, line.session_id, line.prior_period) == (
            1, StatementLine.Kind.SESSION, session.pk, False)
        assert line.occurred_at == la(2026, 8, 3, 12) and line.duration_s == 7200 and line.energy_wh == 12_345
        assert (line.quantity, line.unit, line.unit_price) == (Decimal("12.3450"), "kWh", Decimal("0"))
        assert (line.amount, line.tax, line.tax_rate) == (Decimal("3.950"), Decimal("0"), Decimal("0"))
        assert BilledCharge.objects.get(charge=charge).statement_id == line.statement_id
