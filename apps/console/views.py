"""The building console (the circuit tree's load against its limits, every connector's state, limit and reason,
updated live through apps/console/consumers.py) and the company's portfolio of buildings."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER
from apps.console import portfolio, selectors
from apps.core.selectors import condominium_links


def can_operate(request: HttpRequest) -> bool:
    """apps.accounts.selectors.may_run_chargers, from the roles the access check already read (no query)."""
    return request.user.is_superuser or MANAGER in request.roles


@condominium_role_required(MANAGER, BOARD)
@require_GET
def building_console(request: HttpRequest) -> HttpResponse:
    _, _, picture = selectors.console_picture(request.tenant.schema_name)
    return render(request, "console/building.html", {
        "picture": picture, "can_operate": can_operate(request), "finished": selectors.finished_sessions(),
        "chart_hours": CHART_HOURS,
    })


CHART_HOURS = (1, 3, 6, 12, 24, 48)


@condominium_role_required(MANAGER, BOARD)
@require_GET
def chart(request: HttpRequest) -> JsonResponse:
    """The console's chart: the metered node's load, EV load, other load and limit, a row a minute."""
    raw = request.GET.get("hours", "6")
    if not raw.isdigit() or int(raw) not in CHART_HOURS:
        return JsonResponse({"error": f"hours: {raw[:20]!r} is not one of {', '.join(map(str, CHART_HOURS))}"},
                            status=400)
    return JsonResponse(selectors.chart(int(raw), timezone.now()))


@login_required
@require_GET
def portfolio_page(request: HttpRequest) -> HttpResponse:
    """Every building of the companies the user manages (the company's site); anyone else: 404."""
    buildings = portfolio.portfolio(request.user, timezone.now())
    if not buildings:
        raise Http404("not found")
    links = {link.condominium.pk: link.url for link in condominium_links(request, [b.condominium for b in buildings])}
    return render(request, "console/portfolio.html", {
        "rows": [(b, links.get(b.condominium.pk)) for b in buildings], "count": len(buildings),
        "totals": {"chargers": sum(b.chargers for b in buildings), "online": sum(b.online for b in buildings),
                   "faulted": sum(b.faulted for b in buildings), "sessions": sum(b.sessions for b in buildings),
                   "alerts": sum(b.alerts for b in buildings),
                   "overdue_accounts": sum(b.overdue_accounts for b in buildings)},
    })
