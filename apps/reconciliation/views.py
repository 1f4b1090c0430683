"""The building's pages (its own host):

    GET /reconciliation/                         managers, board: the bills and their reconciliation
    POST /reconciliation/                        managers: enter a bill (the form on that page)
    GET /reconciliation/bills/<id>/              managers, board: one bill's report
    POST /reconciliation/bills/<id>/             managers: action=compute (store the draft) or approve
    GET /reconciliation/investment/              managers, board: what the chargers cost, recovered so far, payback
    GET /residents/<id>/summary?year=&format=    the resident themself and the company's managers: their year
Everyone else gets 404.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER, RESIDENT
from apps.buildings.models import Resident
from apps.reconciliation import selectors, services
from apps.reconciliation.models import ChargerInvestment, Reconciliation, UtilityBill

BILL_FIELDS = {"period_start": "from", "period_end": "to", "kwh": "kwh", "energy_charges": "energy",
               "demand_charges": "demand", "fixed_charges": "fixed", "taxes": "taxes", "ev_kwh": "ev_kwh"}


def _managers_only(request: HttpRequest) -> None:
    """The board reads; only the company's managers change anything (others never get this far)."""
    if MANAGER not in request.roles:
        raise Http404("not found")


def _bill_form(data) -> tuple[dict, list[str]]:
    values: dict = {}
    problems: list[str] = []
    for field, name in BILL_FIELDS.items():
        text = (data.get(name) or "").strip().replace(",", "")
        if not text:
            if name in ("from", "to", "kwh", "energy"):
                problems.append(f"{name}: required")
            continue
        try:
            values[field] = date.fromisoformat(text) if name in ("from", "to") else Decimal(text)
        except (ValueError, InvalidOperation):
            problems.append(f"{name}: {text!r} is not understood")
    values["note"] = (data.get("note") or "").strip()[:2000]
    return values, problems


@condominium_role_required(MANAGER, BOARD)
@require_http_methods(["GET", "POST"])
def bills(request: HttpRequest) -> HttpResponse:
    problems: list[str] = []
    if request.method == "POST":
        _managers_only(request)
        values, problems = _bill_form(request.POST)
        if not problems:
            try:
                bill = services.utility_bill_enter(**values, entered_by=request.user)
            except services.ReconciliationRefused as error:
                problems = [str(error)]
            else:
                return redirect("reconciliation-bill", bill_id=bill.pk)
    rows = list(UtilityBill.objects.select_related("reconciliation"))
    return render(request, "reconciliation/bills.html", {
        "bills": rows, "recovery": selectors.investment_recovery(), "problems": problems,
        "may_enter": MANAGER in request.roles, "form": request.POST if problems else {},
    }, status=400 if problems else 200)


@condominium_role_required(MANAGER, BOARD)
@require_http_methods(["GET", "POST"])
def bill_report(request: HttpRequest, bill_id: int) -> HttpResponse:
    bill = UtilityBill.objects.filter(pk=bill_id).first()
    if bill is None:
        raise Http404("no such bill")
    if request.method == "POST":
        _managers_only(request)
        action = request.POST.get("action")
        if action not in ("compute", "approve"):
            return HttpResponse("action: compute or approve", status=400, content_type="text/plain")
        reconciliation = services.reconciliation_compute(bill_id=bill.pk)
        if action == "approve":
            services.reconciliation_approve(reconciliation_id=reconciliation.pk, approved_by=request.user)
        return redirect("reconciliation-bill", bill_id=bill.pk)
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
                  {"bill": bill, "reconciliation": stored, "snap": snapshot, "shares": shares,
                   "may_change": MANAGER in request.roles})


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
