"""Landing pages. Each role lands on a page that shows what is theirs."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER, RESIDENT, managed_companies, visible_condominiums
from apps.core import selectors


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
    if RESIDENT in roles:
        context["residences"] = selectors.residences_of(request.user)
    context["is_manager"] = MANAGER in roles
    context["is_board"] = BOARD in roles
    return render(request, "core/condominium_home.html", context)
