"""Landing pages. Each role lands on a page that shows what is theirs."""

from __future__ import annotations

from datetime import time
from decimal import Decimal, InvalidOperation

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER, RESIDENT, managed_companies, visible_condominiums
from apps.core import selectors
from apps.core.capacity import CapacityRequest, CapacityUnavailable, building_capacity_report
from apps.electrical import capacity_chart
from apps.statements import periods


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_required
def public_home(request: HttpRequest) -> HttpResponse:
    condominiums = selectors.condominium_links(request, visible_condominiums(request.user))
    return render(
        request,
        "core/public_home.html",
        {"companies": managed_companies(request.user), "condominiums": condominiums},
    )


@condominium_role_required()
def condominium_home(request: HttpRequest) -> HttpResponse:
    roles = request.roles
    context: dict = {"roles": sorted(roles)}
    if MANAGER in roles or BOARD in roles:
        context["overview"] = selectors.building_overview(request.tenant)
        # The audit export offered first: the last month that has ended in the building's time zone.
        context["audit_month"] = periods.last_closable_month(timezone.now(), request.tenant.timezone).strftime("%Y-%m")
    if RESIDENT in roles:
        context["residences"] = selectors.residences_of(request.user)
    context["is_manager"] = MANAGER in roles
    context["is_board"] = BOARD in roles
    return render(request, "core/condominium_home.html", context)


PAGE_MAX_DAYS = 366


def _capacity_request(query) -> tuple[CapacityRequest, list[str]]:
    """The page's form (GET): days, kwh, ready_by, evs; what cannot be read is named and left at its default."""
    values: dict = {}
    problems: list[str] = []
    readers = {
        "days": ("days", int),
        "kwh": ("energy_wh", lambda text: int(Decimal(text) * 1000)),
        "ready_by": ("ready_by", time.fromisoformat),
        "evs": ("target_evs", int),
    }
    for name, (field, read) in readers.items():
        text = query.get(name, "").strip()
        if not text:
            continue
        try:
            values[field] = read(text)
        except (ValueError, InvalidOperation):
            problems.append(f"{name}: {text!r} is not understood")
    request = CapacityRequest(**values)
    problems += request.problems()
    if request.days > PAGE_MAX_DAYS:  # a year takes a few seconds; longer is for the command
        problems.append(f"days: {request.days}; at most {PAGE_MAX_DAYS} here (manage.py capacity_report for more)")
    return (CapacityRequest() if problems else request), problems


@condominium_role_required(MANAGER, BOARD)
@require_GET
def capacity_page(request: HttpRequest) -> HttpResponse:
    """The installer's capacity report for the building's managers and board (residents and others: 404)."""
    wanted, problems = _capacity_request(request.GET)
    context: dict = {"wanted": wanted, "problems": problems, "kwh": Decimal(wanted.energy_wh) / 1000}
    try:
        report = building_capacity_report(zone_name=request.tenant.timezone, request=wanted, now=timezone.now())
    except CapacityUnavailable as exc:
        context["unavailable"] = str(exc)
    else:
        context["report"] = report
        context["phase_names"] = report.phase_names
        # Built by a pure function from numbers, every text in it escaped.
        context["hourly_chart"] = mark_safe(capacity_chart.hourly_load_svg(report))  # noqa: S308
        context["nights_chart"] = mark_safe(capacity_chart.nights_svg(report))  # noqa: S308
    return render(request, "core/capacity.html", context)
