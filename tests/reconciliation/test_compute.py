"""The reconciliation's arithmetic, by hand and by property (pure: no database).

The rules: the EV share of a bill is its energy charges x EV kWh / bill kWh, demand charges by kWh or by
the EV load at the building's peak, fixed charges only when the building says so, taxes in proportion;
each resident's share is split by kWh, cent by cent, the same in any input order; a true-up is share -
paid, waived below the minimum; payback is linear on the recent average, never when it is <= 0.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.reconciliation import compute
from apps.reconciliation.compute import Bill, DemandRule, MonthResult, PeakDemand, RecoveryStatus, Rules, Usage

D = Decimal
NO_MINIMUM = Rules(true_up_minimum=D(0))


def test_a_thousand_dollar_bill_with_two_thousand_of_ten_thousand_kwh():
    # $700 energy, $200 demand, $50 fixed, $50 taxes = $1,000.00; the EVs drew 2,000 of 10,000 kWh: 20 %.
    bill = Bill(10_000_000, D("700.00"), D("200.00"), D("50.00"), D("50.00"), "USD")
    usage = [Usage(1, 1_000_000, D("100.00")), Usage(2, 600_000, D("60.00")), Usage(3, 400_000, D("40.00"))]
    report = compute.reconcile(bill, usage, NO_MINIMUM)
    # energy 700 x 0.2 = 140; demand 200 x 0.2 = 40; fixed not included; taxes 50 x 180 / 950 = 9.473.. -> 9.47
    assert report.ev_share == compute.Components(D("140.00"), D("40.00"), D("0.00"), D("9.47"))
    assert report.ev_share.total == D("189.47") and report.bill_total == D("1000.00")
    assert report.average_rate_kwh == D("0.07000")
    assert report.revenue == D("200.00") and report.shortfall == D("-10.53")
    # 189.47 by 10 : 6 : 4 -> 94.735, 56.841, 37.894 -> 94.73 + 56.84 + 37.89 = 189.46, one cent to the
    # largest rounding loss (the first: .005).
    assert [s.share for s in report.shares] == [D("94.74"), D("56.84"), D("37.89")]
    assert [s.true_up for s in report.shares] == [D("-5.26"), D("-3.16"), D("-2.11")]
    assert report.true_up_total == report.shortfall
    assert report.losses_percent is None and not report.loss_alert and report.reasons == ()

    with_fixed = compute.reconcile(bill, usage, Rules(include_fixed=True))
    # fixed 50 x 0.2 = 10; taxes 50 x 190 / 950 = 10
    assert with_fixed.ev_share == compute.Components(D("140.00"), D("40.00"), D("10.00"), D("10.00"))
    assert with_fixed.ev_share.total == D("200.00") and with_fixed.shortfall == D("0.00")
    assert all(s.true_up == 0 and not s.waived for s in with_fixed.shares)


def test_one_hundred_dollars_for_three_residents_with_equal_kwh():
    bill = Bill(1_000_000, D("100.00"), D(0), D(0), D(0), "USD")
    usage = [Usage(7, 50_000, D(0)), Usage(3, 50_000, D(0)), Usage(5, 50_000, D(0))]
    report = compute.reconcile(bill, usage, NO_MINIMUM)
    assert report.ev_share.total == D("15.00")
    # The split is in resident order, whatever the input order: the extra cent to the lowest id.
    big = compute.reconcile(Bill(150_000, D("100.00"), D(0), D(0), D(0), "USD"), usage, NO_MINIMUM)
    assert [(s.resident_id, s.share) for s in big.shares] == [(3, D("33.34")), (5, D("33.33")), (7, D("33.33"))]
    assert compute.split_cost(D("100.00"), [1, 1, 1], "USD") == [D("33.34"), D("33.33"), D("33.33")]


def test_losses_from_the_sub_meter_and_the_alert_above_the_threshold():
    bill = Bill(10_000_000, D("1000.00"), D(0), D(0), D(0), "USD", ev_submeter_wh=2_200_000)
    usage = [Usage(1, 2_000_000, D("200.00"))]
    report = compute.reconcile(bill, usage, Rules(loss_alert_percent=D(8)))
    # (2,200 - 2,000) / 2,200 = 9.09 %: above 8 %
    assert report.losses_wh == 200_000 and report.losses_percent == D("9.09") and report.loss_alert
    # The residents cover what the sub-meter saw: 1000 x 0.22 = 220
    assert report.ev_wh == 2_200_000 and report.ev_share.total == D("220.00")
    assert report.shares[0].true_up == D("20.00")
    calm = compute.reconcile(bill, usage, Rules(loss_alert_percent=D(10)))
    assert calm.losses_percent == D("9.09") and not calm.loss_alert
    odd = compute.reconcile(Bill(10_000_000, D("1000.00"), D(0), D(0), D(0), "USD", ev_submeter_wh=1_900_000),
                            usage, Rules())
    assert odd.losses_percent == D("-5.26") and not odd.loss_alert
    assert "reads less than the chargers' sessions" in odd.reasons[0]


def test_demand_by_the_ev_load_at_the_peak_and_the_fallback():
    bill = Bill(10_000_000, D("700.00"), D("300.00"), D(0), D(0), "USD")
    usage = [Usage(1, 2_000_000, D(0))]
    peak = compute.reconcile(bill, usage, Rules(demand_rule=DemandRule.PEAK), PeakDemand(100_000, 40_000))
    assert peak.ev_share.demand == D("120.00") and peak.demand_rule is DemandRule.PEAK  # 300 x 40 %
    fallback = compute.reconcile(bill, usage, Rules(demand_rule=DemandRule.PEAK), None)
    assert fallback.ev_share.demand == D("60.00") and fallback.demand_rule is DemandRule.ENERGY
    assert "shared by kWh instead" in fallback.reasons[0]


def test_small_true_ups_are_waived_and_visitors_keep_their_share():
    bill = Bill(1_000_000, D("100.00"), D(0), D(0), D(0), "USD")
    usage = [Usage(1, 100_000, D("9.50")), Usage(2, 100_000, D("5.00")), Usage(None, 100_000, D("8.00"))]
    report = compute.reconcile(bill, usage, Rules(true_up_minimum=D("1.00")))
    one, two, visitors = report.shares
    assert (one.share, one.true_up, one.waived) == (D("10.00"), D(0), True)  # 0.50 < 1.00
    assert (two.share, two.true_up, two.waived) == (D("10.00"), D("5.00"), False)
    assert (visitors.resident_id, visitors.share, visitors.true_up) == (None, D("10.00"), D(0))


def test_doubtful_bills_are_reported_not_guessed():
    nothing = compute.reconcile(Bill(0, D("10.00"), D(0), D(0), D(0), "USD"), [Usage(1, 5, D(0))], Rules())
    assert nothing.reasons == ("the bill has no kWh: nothing can be shared",) and nothing.ev_share.total == 0
    over = compute.reconcile(Bill(1_000, D("10.00"), D(0), D(0), D(0), "USD"), [Usage(1, 2_000, D(0))], Rules())
    assert "exceed the building's bill" in over.reasons[0]
    with pytest.raises(ValueError, match="negative energy"):
        compute.reconcile(Bill(1_000, D(1), D(0), D(0), D(0), "USD"), [Usage(1, -1, D(0))], Rules())


def test_zero_decimal_currency():
    report = compute.reconcile(Bill(3_000, D("1000"), D(0), D(0), D(0), "JPY"),
                               [Usage(1, 1_000, D(0)), Usage(2, 1_000, D(0)), Usage(3, 1_000, D(0))], NO_MINIMUM)
    assert [s.share for s in report.shares] == [D("334"), D("333"), D("333")]


usages = st.lists(
    st.builds(Usage, st.one_of(st.none(), st.integers(1, 30)), st.integers(0, 80_000),
              st.decimals(0, 30, places=2)),
    min_size=1, max_size=25,
)
bills = st.builds(Bill, st.integers(2_000_000, 50_000_000), st.decimals(0, 5_000, places=2),
                  st.decimals(0, 2_000, places=2), st.decimals(0, 500, places=2), st.decimals(0, 500, places=2),
                  st.just("USD"))


@settings(max_examples=300, deadline=None)
@given(bills, usages, st.booleans(), st.randoms())
def test_shares_add_up_in_any_order_and_true_ups_cover_the_residents_shortfall(bill, usage, fixed, rnd):
    rules = Rules(include_fixed=fixed, true_up_minimum=D(0))
    report = compute.reconcile(bill, usage, rules)
    shuffled = list(usage)
    rnd.shuffle(shuffled)
    assert compute.reconcile(bill, shuffled, rules) == report
    if report.sessions_wh == 0:
        return
    assert sum(s.share for s in report.shares) == report.ev_share.total
    assert all(s.share == s.share.quantize(D("0.01")) for s in report.shares)
    # Cent by cent: no share is more than one cent away from its exact part.
    for s in report.shares:
        exact = report.ev_share.total * s.energy_wh / report.sessions_wh
        assert abs(s.share - exact) < D("0.01")
    residents = [s for s in report.shares if s.resident_id is not None]
    assert report.true_up_total == sum(s.share for s in residents) - sum(s.paid for s in residents)
    if all(u.resident_id is not None for u in usage):
        assert report.true_up_total == report.shortfall


def test_payback_is_linear_on_the_recent_average():
    months = [MonthResult(date(2026, m, 1), D("100.00"), D("50.00")) for m in range(1, 7)]  # 150 a month
    recovery = compute.investment_recovery(D("3000.00"), months, "USD")
    assert recovery.recovered == D("900.00") and recovery.remaining == D("2100.00")
    assert recovery.average_monthly == D("150.00") and recovery.status is RecoveryStatus.RECOVERING
    assert recovery.payback_month == date(2027, 8, 1)  # 2,100 / 150 = 14 months after June 2026
    assert recovery.months[-1] == (date(2026, 6, 1), D("150.00"), D("900.00"))
    # Only the last N months count for the projection: 100 a month -> 21 months.
    window = compute.investment_recovery(D("3000.00"), [MonthResult(date(2025, 12, 1), D("600.00"), D(0)),
                                                        *[MonthResult(date(2026, m, 1), D("100.00"), D(0))
                                                          for m in range(1, 4)]], "USD", window=3)
    assert window.remaining == D("2100.00") and window.average_monthly == D("100.00")
    assert window.payback_month == date(2027, 12, 1)  # 21 months after March 2026


def test_not_recovering_recovered_and_no_history():
    losing = [MonthResult(date(2026, 1, 1), D("10.00"), D("-30.00"))]
    assert compute.investment_recovery(D("500"), losing, "USD").status is RecoveryStatus.NOT_RECOVERING
    assert compute.investment_recovery(D("500"), losing, "USD").payback_month is None
    done = [MonthResult(date(2026, 1, 1), D("300"), D(0)), MonthResult(date(2026, 2, 1), D("300"), D(0)),
            MonthResult(date(2026, 3, 1), D("300"), D(0))]
    recovered = compute.investment_recovery(D("500"), list(reversed(done)), "USD")
    assert recovered.status is RecoveryStatus.RECOVERED and recovered.payback_month == date(2026, 2, 1)
    assert recovered.remaining == 0 and recovered.recovered == D("900")
    assert compute.investment_recovery(D("500"), [], "USD").status is RecoveryStatus.NO_HISTORY
    assert compute.investment_recovery(D("0"), done, "USD").status is RecoveryStatus.NO_INVESTMENT
    with pytest.raises(ValueError, match="twice"):
        compute.investment_recovery(D("1"), done + done[:1], "USD")
