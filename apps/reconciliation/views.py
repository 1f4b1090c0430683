"""The building's pages (its own host):

    GET /reconciliation/                         managers, board: the bills and their reconciliation
    GET /reconciliation/bills/<id>/              managers, board: one bill's report
    GET /reconciliation/investment/              managers, board: what the chargers cost, recovered so far, payback
    GET /residents/<id>/summary?year=&format=    the resident themself and the company's managers: their year
Everyone else gets 404.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER, RESIDENT
from apps.buildings.models import Resident
from apps.reconciliation import selectors, services
from apps.reconciliation.models import ChargerInvestment, Reconciliation, UtilityBill


@condominium_role_required(MANAGER, BOARD)
@require_GET
def bills(request: HttpRequest) -> HttpResponse:
    rows = list(UtilityBill.objects.select_related("reconciliation"))
    return render(request, "reconciliation/bills.html", {"bills": rows, "recovery": selectors.investment_recovery()})


@condominium_role_required(MANAGER, BOARD)
@require_GET
def bill_report(request: HttpRequest, bill_id: int) -> HttpResponse:
    bill = UtilityBill.objects.filter(pk=bill_id).first()
    if bill is None:
        raise Http404("no such bill")
    stored = Reconciliation.objects.filter(bill=bill).first()
    # A draft is shown as it stands now (a page never writes); approved figures as they were approved.
    if stored is not None and stored.status == Reconciliation.Status.APPROVED:
        snapshot = stored.snapshot
    else:
        snapshot = services.snapshot_of(services.report_for(bill))
    names = dict(Resident.objects.filter(pk__in=[s["resident_id"] for s in snapshot["shares"] if s["resident_id"]])
                 .values_list("pk", "user__email"))
    shares = [{**s, "who": names.get(s["resident_id"], "")} for s in snapshot["shares"]]
    return render(request, "reconciliation/report.html",
                  {"bill": bill, "reconciliation": stored, "snap": snapshot, "shares": shares})


@condominium_role_required(MANAGER, BOARD)
@require_GET
def investment(request: HttpRequest) -> HttpResponse:
    return render(request, "reconciliation/investment.html", {
        "recovery": selectors.investment_recovery(), "investments": list(ChargerInvestment.objects.all()),
        "window": selectors.RECOVERY_WINDOW_MONTHS,
    })


@condominium_role_required(MANAGER, RESIDENT)
@require_GET
def resident_summary(request: HttpRequest, resident_id: int) -> HttpResponse:
    resident = Resident.objects.filter(pk=resident_id).select_related("user").first()
    if resident is None or (MANAGER not in request.roles and resident.user_id != request.user.pk):
        raise Http404("not found")
    text = request.GET.get("year", "").strip()
    try:
        year = int(text) if text else timezone.localdate(timezone.now(), _zone(request)).year
    except ValueError:
        year = 0
    if not 2000 <= year <= 2100:
        return HttpResponse(f"year: {text!r} is not a year such as 2026", status=400, content_type="text/plain")
    summary = selectors.yearly_summary(resident_id=resident.pk, year=year)
    if request.GET.get("format") == "pdf":
        from apps.reconciliation.documents import year_pdf

        response = HttpResponse(year_pdf(summary, request.tenant), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="summary-{year}.pdf"'
        return response
    return render(request, "reconciliation/year.html", {"summary": summary, "year": year})


def _zone(request: HttpRequest):
    from zoneinfo import ZoneInfo

    return ZoneInfo(request.tenant.timezone)
