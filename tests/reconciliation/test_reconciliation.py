"""A utility bill reconciled with Maple Court's chargers, true-ups on the next statement, payback, a year.

The rules: sessions count in the bill's period by when they stopped, in the building's time zone; a
sub-meter reading above the sessions by more than the threshold raises an alert; approving creates each
resident's true-up once; the next close puts it on their statement once, even for a resident with
nothing else that month, and closing again changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.alerts.models import Alert
from apps.core.tenants import in_schema
from apps.reconciliation import selectors, services
from apps.reconciliation.compute import RecoveryStatus
from apps.reconciliation.models import Reconciliation, ReconciliationSettings, TrueUp, UtilityBill
from apps.reconciliation.services import ReconciliationRefused
from apps.statements.closing import period_close
from apps.statements.models import Statement, StatementLine
from tests import factories
from tests.reconciliation.sessions import la, resident, session

D = Decimal


@pytest.fixture
def april(world):
    """Alice 12.345 kWh ($3.95) and Bob 5 kWh ($1.60) in April, a session ending May 1 (not April's)."""
    alice, bob = resident(world.maple, "alice"), resident(world.maple, "bob")
    with in_schema(world.maple.schema_name):
        session(alice, la(2026, 4, 3, 12), la(2026, 4, 3, 14), 12_345)
        session(bob, la(2026, 4, 10, 9), la(2026, 4, 10, 10), 5_000)
        session(alice, la(2026, 4, 30, 23), la(2026, 5, 1, 0, 30), 3_000)  # stops in May, local time
    return alice, bob


def enter_april_bill(**extra) -> UtilityBill:
    values = {"period_start": date(2026, 4, 1), "period_end": date(2026, 4, 30), "kwh": D("1000.000"),
              "energy_charges": D("300.00"), "demand_charges": D("50.00"), "fixed_charges": D("20.00"),
              "taxes": D("0.00"), "ev_kwh": D("20.000")}
    return services.utility_bill_enter(**{**values, **extra}, now=la(2026, 5, 2, 9))


@pytest.mark.django_db
def test_the_bill_against_the_chargers_with_the_losses_alert(world, april):
    alice, bob = april
    with in_schema(world.maple.schema_name):
        bill = enter_april_bill()
        reconciliation = services.reconciliation_compute(bill_id=bill.pk)
        # Sessions 17,345 Wh against the sub-meter's 20,000: losses 2,655 Wh = 13.28 % (> 8 %).
        assert (reconciliation.sessions_wh, reconciliation.ev_wh) == (17_345, 20_000)
        assert reconciliation.losses_percent == D("13.28")
        # EV share: energy 300 x 2 % = 6.00, demand 50 x 2 % = 1.00, fixed not shared by default.
        assert reconciliation.ev_cost == D("7.00") and reconciliation.revenue == D("5.55")
        assert reconciliation.shortfall == D("1.45")
        shares = {s["resident_id"]: s for s in reconciliation.snapshot["shares"]}
        # 7.00 x 12,345 / 17,345 = 4.982 -> 4.98; x 5,000 / 17,345 = 2.0179 -> 2.01, plus the left cent.
        assert (shares[alice.pk]["share"], shares[alice.pk]["true_up"]) == ("4.98", "1.03")
        assert (shares[bob.pk]["share"], shares[bob.pk]["true_up"], shares[bob.pk]["waived"]) == ("2.02", "0", True)
        alert = Alert.objects.get(kind=Alert.Kind.EV_LOSSES, resolved_at__isnull=True)
        assert "13.28 %" in alert.message and alert.details["bill_id"] == bill.pk

        # A higher threshold, computed again (still a draft): the alert is resolved.
        ReconciliationSettings.objects.create(loss_alert_percent=D("15"))
        services.reconciliation_compute(bill_id=bill.pk)
        assert not Alert.objects.filter(kind=Alert.Kind.EV_LOSSES, resolved_at__isnull=True).exists()
        assert Reconciliation.objects.count() == 1


@pytest.mark.django_db
def test_bad_bills_are_refused_saying_what(world):
    with in_schema(world.maple.schema_name):
        enter_april_bill()
        with pytest.raises(ReconciliationRefused, match="overlaps bill"):
            enter_april_bill(period_start=date(2026, 4, 30), period_end=date(2026, 5, 29))
        with pytest.raises(ReconciliationRefused, match=r"ends .* before it starts"):
            enter_april_bill(period_start=date(2026, 6, 2), period_end=date(2026, 6, 1))
        with pytest.raises(ReconciliationRefused, match="more than three decimals"):
            enter_april_bill(period_start=date(2026, 7, 1), period_end=date(2026, 7, 31), kwh=D("1.0005"))
        with pytest.raises(ReconciliationRefused, match=r"energy: 1\.001 has more decimals than USD"):
            enter_april_bill(period_start=date(2026, 7, 1), period_end=date(2026, 7, 31), energy_charges=D("1.001"))
        with pytest.raises(ReconciliationRefused, match=r"ev_kwh: 2000\.000 kWh on the EV sub-meter is more"):
            enter_april_bill(period_start=date(2026, 7, 1), period_end=date(2026, 7, 31), ev_kwh=D("2000.000"))
        assert UtilityBill.objects.count() == 1
    with pytest.raises(CommandError, match="--kwh: 'lots' is not a number"):
        call_command("enter_utility_bill", "--condominium", "maple-court", "--from", "2026-08-01", "--to",
                     "2026-08-31", "--kwh", "lots", "--energy", "1")
    with pytest.raises(CommandError, match="no building 'nowhere'"):
        call_command("reconcile", "--condominium", "nowhere", "--bill", "1")


@pytest.mark.django_db
def test_true_ups_land_on_the_next_statement_once(world, april):
    alice, bob = april
    with in_schema(world.maple.schema_name):
        april_close = period_close(month=date(2026, 4, 1), now=la(2026, 5, 1, 0, 5))
        assert april_close.statements >= 2
        out = StringIO()
        call_command("enter_utility_bill", "--condominium", "maple-court", "--from", "2026-04-01", "--to",
                     "2026-04-30", "--kwh", "1,000", "--energy", "300.00", "--demand", "50", "--fixed", "20",
                     "--ev-kwh", "20", stdout=out)
        bill = UtilityBill.objects.get()
        assert f"bill {bill.pk} entered" in out.getvalue() and "total 370.00 USD" in out.getvalue()
    out = StringIO()
    call_command("reconcile", "--condominium", "maple-court", "--bill", str(bill.pk), "--approve", stdout=out)
    report = out.getvalue()
    assert "losses 2.655 kWh = 13.28 %  ALERT" in report and "= 7.00 USD" in report and "waived" in report
    assert "1 true-up(s) for the next statements" in report
    assert "total 370.00 USD (energy 300.00, demand 50.00, fixed 20.00, taxes 0.00)" in report
    with in_schema(world.maple.schema_name):
        reconciliation = Reconciliation.objects.get()
        assert reconciliation.status == Reconciliation.Status.APPROVED
        # Approving again, or computing again, changes nothing.
        services.reconciliation_approve(reconciliation_id=reconciliation.pk)
        services.reconciliation_compute(bill_id=bill.pk)
        [true_up] = TrueUp.objects.all()
        assert (true_up.resident_id, true_up.amount, true_up.line_id) == (alice.pk, D("1.030"), None)

        # May: Alice's only activity is a session that stopped on May 1, Bob has none; the true-up is Alice's.
        period_close(month=date(2026, 5, 1), now=la(2026, 6, 1, 0, 5))
        true_up.refresh_from_db()
        statement = Statement.objects.get(resident=alice, period__month=date(2026, 5, 1))
        line = statement.lines.get(kind=StatementLine.Kind.TRUE_UP)
        assert (true_up.line_id, true_up.statement_id) == (line.pk, statement.pk)
        assert line.amount == D("1.030") and "True-up, utility bill 2026-04-01 to 2026-04-30" in line.description
        assert statement.total == sum((x.amount + x.tax for x in statement.lines.all()), D(0))
        assert not Statement.objects.filter(resident=bob, period__month=date(2026, 5, 1)).exists()
        # Closing again (and the next month) puts it nowhere else.
        period_close(month=date(2026, 5, 1), now=la(2026, 6, 1, 0, 5))
        period_close(month=date(2026, 6, 1), now=la(2026, 7, 1, 0, 5))
        assert StatementLine.objects.filter(kind=StatementLine.Kind.TRUE_UP).count() == 1


@pytest.mark.django_db
def test_a_true_up_alone_makes_a_statement(world):
    carol = resident(world.maple, "carol")
    with in_schema(world.maple.schema_name):
        ReconciliationSettings.objects.create(true_up_minimum=D("0.01"))
        session(carol, la(2026, 3, 3, 12), la(2026, 3, 3, 14), 10_000)  # $3.20
        period_close(month=date(2026, 3, 1), now=la(2026, 4, 1, 0, 5))
        bill = services.utility_bill_enter(period_start=date(2026, 3, 1), period_end=date(2026, 3, 31),
                                           kwh=D("100"), energy_charges=D("40.00"), now=la(2026, 4, 2))
        reconciliation = services.reconciliation_compute(bill_id=bill.pk)
        assert reconciliation.ev_cost == D("4.00") and reconciliation.losses_percent is None
        services.reconciliation_approve(reconciliation_id=reconciliation.pk)
        # March closed before the bill came; April has nothing else for Carol.
        period_close(month=date(2026, 4, 1), now=la(2026, 5, 1, 0, 5))
        statement = Statement.objects.get(resident=carol, period__month=date(2026, 4, 1))
        [line] = statement.lines.all()
        assert (line.kind, line.amount, statement.total) == ("true_up", D("0.800"), D("0.800"))
        assert statement.status == Statement.Status.OPEN and statement.number


@pytest.mark.django_db
def test_investment_recovery_and_payback(world, april):
    with in_schema(world.maple.schema_name):
        assert selectors.investment_recovery().status is RecoveryStatus.NO_INVESTMENT
        services.investment_add(description="2 chargers and wiring", amount=D("100.00"), on=date(2026, 1, 15))
        with pytest.raises(ReconciliationRefused, match="description"):
            services.investment_add(description=" ", amount=D("1.00"), on=date(2026, 1, 15))
        assert selectors.investment_recovery().status is RecoveryStatus.NO_HISTORY
        # A cheap bill: EV cost 100 x 17.345 / 1,000 = 1.73, revenue 5.55: margin 3.82 in April.
        bill = services.utility_bill_enter(period_start=date(2026, 4, 1), period_end=date(2026, 4, 30),
                                           kwh=D("1000"), energy_charges=D("100.00"), now=la(2026, 5, 2))
        services.reconciliation_compute(bill_id=bill.pk)
        recovery = selectors.investment_recovery()
        assert (recovery.recovered, recovery.remaining, recovery.average_monthly) == (
            D("3.82"), D("96.18"), D("3.82"))
        # 96.18 / 3.82 = 25.2 -> 26 months after April 2026: June 2028.
        assert recovery.status is RecoveryStatus.RECOVERING and recovery.payback_month == date(2028, 6, 1)
    out = StringIO()
    call_command("add_charger_investment", "--condominium", "maple-court", "--amount", "-20.00", "--date",
                 "2026-02-01", "--description", "utility rebate", stdout=out)
    # 80.00 - 3.82 = 76.18 / 3.82 = 19.9 -> 20 months after April 2026.
    assert out.getvalue().strip() == ("maple-court: invested 80.00 USD, recovered 3.82, remaining 76.18; "
                                      "recovering, payback 2027-12")
    with pytest.raises(CommandError, match="--amount: 'ten' is not a number"):
        call_command("add_charger_investment", "--condominium", "maple-court", "--amount", "ten", "--date",
                     "2026-02-01", "--description", "x")


@pytest.mark.django_db
def test_yearly_summary(world, april):
    alice, _ = april
    with in_schema(world.maple.schema_name):
        period_close(month=date(2026, 4, 1), now=la(2026, 5, 1, 0, 5))
        from apps.payments.models import Payment

        # Paid on May 31 at 23:30 local time (June 1 in UTC): May's, in the building's time zone.
        Payment.objects.create(resident=alice, kind=Payment.Kind.ON_SESSION, amount=D("3.95"), currency="USD",
                               purpose="statement", reference="x", status=Payment.Status.SUCCEEDED,
                               idempotency_key=uuid.uuid4().hex, succeeded_at=la(2026, 5, 31, 23, 30))
        summary = selectors.yearly_summary(resident_id=alice.pk, year=2026)
        assert summary.months[4].paid == D("3.95") and summary.months[5].paid == 0 and len(summary.payments) == 1
        april_row, may_row = summary.months[3], summary.months[4]
        assert (april_row.sessions, april_row.energy_wh, april_row.charged) == (1, 12_345, D("3.950"))
        assert april_row.statements_total == D("3.950") and may_row.sessions == 1
        assert summary.total("energy_wh") == 15_345 and len(summary.statements) == 1
    out = StringIO()
    call_command("yearly_summary", "--condominium", "maple-court", "--resident", alice.user.email, "--year", "2026",
                 stdout=out)
    text = out.getvalue()
    assert "2026-04        1     12.345       3.95" in text and summary.statements[0].number in text
    with pytest.raises(CommandError, match="nobody with e-mail"):
        call_command("yearly_summary", "--condominium", "maple-court", "--resident", "x@y.test", "--year", "2026")


@pytest.mark.django_db
def test_a_close_that_fails_leaves_the_true_up_for_the_retry(world, april, monkeypatch):
    alice, _ = april
    with in_schema(world.maple.schema_name):
        period_close(month=date(2026, 4, 1), now=la(2026, 5, 1, 0, 5))
        bill = enter_april_bill()
        services.reconciliation_approve(reconciliation_id=services.reconciliation_compute(bill_id=bill.pk).pk)
        [true_up] = TrueUp.objects.all()

        from apps.statements import settlement

        def crash(period_id):
            raise RuntimeError("the machine lost power")

        monkeypatch.setattr(settlement, "statements_after_close", crash)
        with pytest.raises(RuntimeError, match="lost power"):
            period_close(month=date(2026, 5, 1), now=la(2026, 6, 1, 0, 5))
        true_up.refresh_from_db()
        assert true_up.line_id is None and not Statement.objects.filter(period__month=date(2026, 5, 1)).exists()
        monkeypatch.undo()
        period_close(month=date(2026, 5, 1), now=la(2026, 6, 1, 0, 5))
        true_up.refresh_from_db()
        assert true_up.statement.resident_id == alice.pk and true_up.line.amount == D("1.030")
        assert StatementLine.objects.filter(kind=StatementLine.Kind.TRUE_UP).count() == 1


@pytest.mark.django_db
def test_demand_by_the_peak_without_a_site_meter_falls_back_and_says_so(world, april):
    with in_schema(world.maple.schema_name):
        ReconciliationSettings.objects.create(demand_rule="peak")
        bill = enter_april_bill()
        snapshot = services.reconciliation_compute(bill_id=bill.pk).snapshot
        assert snapshot["demand_rule"] == "energy" and snapshot["ev_share"]["demand"] == "1.00"
        assert any("shared by kWh instead" in reason for reason in snapshot["reasons"])


@pytest.mark.django_db
def test_a_credit_true_up_lowers_what_the_resident_owes(world, april):
    alice, bob = april
    with in_schema(world.maple.schema_name):
        from apps.payments.models import LedgerEntry

        period_close(month=date(2026, 4, 1), now=la(2026, 5, 1, 0, 5))
        # A cheap bill: EV cost 100 x 17.345 / 1,000 = 1.73 against 5.55 paid. Alice 1.23 (paid 3.95), Bob 0.50.
        bill = services.utility_bill_enter(period_start=date(2026, 4, 1), period_end=date(2026, 4, 30),
                                           kwh=D("1000"), energy_charges=D("100.00"), now=la(2026, 5, 2))
        services.reconciliation_approve(reconciliation_id=services.reconciliation_compute(bill_id=bill.pk).pk)
        assert dict(TrueUp.objects.values_list("resident_id", "amount")) == {alice.pk: D("-2.720"),
                                                                           bob.pk: D("-1.100")}
        period_close(month=date(2026, 5, 1), now=la(2026, 6, 1, 0, 5))
        statement = Statement.objects.get(resident=bob, period__month=date(2026, 5, 1))
        assert statement.total == D("-1.100") and statement.status == Statement.Status.PAID
        entry = LedgerEntry.objects.get(entry_key=f"statement:{statement.pk}")
        assert entry.amount == D("-1.10")


@pytest.mark.django_db
def test_demand_by_the_ev_load_at_the_buildings_peak_quarter(world, april):
    from apps.electrical.models import SiteMeterQuarter

    meter = factories.site_meter(world.maple, {"id": f"m-{uuid.uuid4().hex[:6]}", "source": "api", "token": "t" * 32})
    with in_schema(world.maple.schema_name):
        ReconciliationSettings.objects.create(demand_rule="peak")
        # The building's busiest quarter, 12:15-12:30 on April 3, while Alice charged 12.345 kWh in 2 h
        # (6,172.5 W on average); a quieter quarter the week after.
        for start, mean in ((la(2026, 4, 3, 12, 15), D("40.0")), (la(2026, 4, 10, 20), D("20.0"))):
            SiteMeterQuarter.objects.create(meter=meter, period_start=start, samples=90, peak_l1_a=mean,
                                            peak_l2_a=mean, peak_l3_a=mean, mean_l1_a=mean, mean_l2_a=mean,
                                            mean_l3_a=mean)
        peak = services.peak_in(*services.bill_bounds(enter_april_bill(), world.maple.timezone))
        snapshot = services.reconciliation_compute(bill_id=UtilityBill.objects.get().pk).snapshot
    assert peak is not None and peak.building_peak_w == 120 * 230
    # The EVs' share of that quarter, from Alice's register: about 6.2 kW of the building's 27.6 kW.
    assert 5_500 <= peak.ev_at_peak_w <= 6_500
    assert snapshot["demand_rule"] == "peak"
    expected = (D("50.00") * peak.ev_at_peak_w / peak.building_peak_w).quantize(D("0.01"))
    assert D(snapshot["ev_share"]["demand"]) == expected and expected > D("10")
