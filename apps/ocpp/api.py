"""HTTP interface for commands to chargers: managers of the charger's company (and superusers).

    POST /api/ocpp/chargers/<chargePointId>/commands/<Action>   body: the OCPP payload (JSON)
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from apps.accounts.selectors import may_run_chargers
from apps.ocpp import commands, handshake
from apps.tenancy.models import Condominium


@login_required
@require_POST
def charger_command(request: HttpRequest, charge_point_id: str, action: str) -> JsonResponse:
    registration = handshake.find_registration(charge_point_id)
    if registration is None:
        raise Http404("no such charger")
    condominium = Condominium.objects.get(pk=registration.condominium_id)
    if not may_run_chargers(request.user, condominium):
        raise Http404("no such charger")  # the same answer as for a charger that does not exist
    try:
        payload = json.loads(request.body or b"{}")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        return JsonResponse({"error": "the body must be a JSON object (the OCPP payload)"}, status=400)
    timeout = _timeout(request.GET.get("timeout", "30"))
    if timeout is None:
        return JsonResponse({"error": "timeout must be a number of seconds from 1 to 120"}, status=400)
    try:
        answer = commands.send_command_sync(registration.charge_point_id, action, payload, timeout,
                                            schema_name=registration.schema_name)
    except commands.ChargerNotConnected:
        return JsonResponse({"error": "charger not connected"}, status=409)
    except commands.CommandTimeout as error:
        return JsonResponse({"error": str(error)}, status=504)
    except commands.InvalidCommand as error:
        return JsonResponse({"error": error.error_code, "description": error.description}, status=400)
    except commands.CommandRejected as error:
        return JsonResponse({"error": error.error_code, "description": error.description}, status=502)
    return JsonResponse({"status": "ok", "answer": answer})


def _timeout(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 1 <= value <= 120 else None  # also refuses nan and inf
