"""The reconciliation report and a resident's year as plain text, for the commands."""

from __future__ import annotations

from decimal import Decimal

from apps.billing.pricing import round_money
from apps.buildings.models import Resident
from apps.reconciliation.models import Reconciliation
from apps.reconciliation.selectors import YearSummary


def _kwh(wh: int | str) -> str:
    return f"{Decimal(wh) / 1000:,.3f}"


def reconciliation(rec: Reconciliation) -> str:
    bill, snap = rec.bill, rec.snapshot
    cur = bill.currency

    def m(amount: Decimal) -> Decimal:
        return round_money(amount, cur)

    share = snap["ev_share"]
    names = dict(Resident.objects.filter(pk__in=[s["resident_id"] for s in snap["shares"] if s["resident_id"]])
                 .values_list("pk", "user__email"))
    out = [
        f"Utility bill {bill.pk}: {bill.period_start} to {bill.period_end} ({rec.get_status_display().lower()})",
        f"  building       {_kwh(bill.energy_wh):>14} kWh   total {m(bill.total)} {cur} "
        f"(energy {m(bill.energy_charges)}, demand {m(bill.demand_charges)}, fixed {m(bill.fixed_charges)}, "
        f"taxes {m(bill.taxes)}); average energy rate {snap['average_rate_kwh']} {cur}/kWh",
        f"  EV sessions    {_kwh(snap['sessions_wh']):>14} kWh",
    ]
    if bill.ev_submeter_wh is not None:
        alert = "  ALERT: above the threshold" if snap["loss_alert"] else ""
        out.append(f"  EV sub-meter   {_kwh(bill.ev_submeter_wh):>14} kWh   losses {_kwh(snap['losses_wh'])} kWh "
                   f"= {snap['losses_percent']} %{alert}")
    out += [
        f"  EV share of the bill: energy {share['energy']} + demand {share['demand']} (by {snap['demand_rule']}) + "
        f"fixed {share['fixed']} + taxes {share['taxes']} = {share['total']} {cur}",
        f"  tariff revenue {snap['revenue']} {cur}; cost {share['total']} {cur}; "
        f"{'shortfall' if Decimal(snap['shortfall']) > 0 else 'surplus'} {abs(Decimal(snap['shortfall']))} {cur}",
        "",
        f"  {'resident':<32} {'kWh':>12} {'share':>10} {'paid':>10} {'true-up':>10}",
    ]
    for s in snap["shares"]:
        who = names.get(s["resident_id"], f"resident {s['resident_id']}") if s["resident_id"] else "(visitors, unknown)"
        true_up = "waived" if s["waived"] else s["true_up"]
        out.append(f"  {who:<32} {_kwh(s['energy_wh']):>12} {s['share']:>10} {s['paid']:>10} {true_up:>10}")
    out.append(f"  true-ups total {snap['true_up_total']} {cur}")
    if rec.status == Reconciliation.Status.APPROVED:
        made = rec.true_ups.count()
        out.append(f"  approved {rec.approved_at:%Y-%m-%d %H:%M} UTC; {made} true-up(s) for the next statements")
    for reason in snap["reasons"]:
        out.append(f"  note: {reason}")
    return "\n".join(out)


def year(summary: YearSummary) -> str:
    cur = summary.currency
    out = [f"{summary.resident.user.email} · unit {summary.resident.unit.number if summary.resident.unit else '-'}"
           f" · {summary.year} ({cur})",
           f"  {'month':<8} {'sessions':>8} {'kWh':>10} {'charging':>10} {'fees':>8} {'true-ups':>9} "
           f"{'statements':>11} {'paid':>10}"]
    for m in summary.months:
        out.append(f"  {m.month:%Y-%m} {m.sessions:>8} {m.kwh:>10,.3f} {m.charged:>10.2f} {m.service_fees:>8.2f} "
                   f"{m.true_ups:>9.2f} {m.statements_total:>11.2f} {m.paid:>10.2f}")
    out.append(f"  {'total':<8} {summary.total('sessions'):>8} {Decimal(summary.total('energy_wh')) / 1000:>10,.3f} "
               f"{summary.total('charged'):>10.2f} {summary.total('service_fees'):>8.2f} "
               f"{summary.total('true_ups'):>9.2f} {summary.total('statements_total'):>11.2f} "
               f"{summary.total('paid'):>10.2f}")
    if summary.statements:
        out.append("  statements: " + ", ".join(f"{s.number} ({s.period.month:%Y-%m}, {s.total:.2f}, "
                                                f"{s.get_status_display().lower()})" for s in summary.statements))
    return "\n".join(out)
