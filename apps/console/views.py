"""The building console: the circuit tree's load against its limits, every connector's state, limit and reason,
updated live through apps/console/consumers.py."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER
from apps.console import selectors


@condominium_role_required(MANAGER, BOARD)
@require_GET
def building_console(request: HttpRequest) -> HttpResponse:
    _, _, picture = selectors.console_picture(request.tenant.schema_name)
    return render(request, "console/building.html", {
        "picture": picture,
    })
