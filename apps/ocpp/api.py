"""HTTP interface for commands to chargers: managers of the charger's company (and superusers). Each command is on
the building's operations trail (apps/ocpp/operations.py).

    POST /api/ocpp/chargers/<chargePointId>/commands/<Action>   body: the OCPP payload (JSON)
"""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from apps.accounts.selectors import may_run_chargers
from apps.core.tenants import in_schema
from apps.ocpp import handshake, operations
from apps.ocpp.models import RemoteOperation
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
    with in_schema(registration.schema_name):  # recorded on the building's operations trail
        operation = operations.operation_run(
            user=request.user, charge_point_id=registration.charge_point_id, action=action, payload=payload,
            via="api", schema_name=registration.schema_name, timeout=timeout,
            connector_number=_connector_of(payload))
    outcome = operation.outcome
    if outcome == RemoteOperation.Outcome.NOT_CONNECTED:
        return JsonResponse({"error": "charger not connected"}, status=409)
    if outcome == RemoteOperation.Outcome.TIMEOUT:
        return JsonResponse({"error": operation.error}, status=504)
    if outcome in (RemoteOperation.Outcome.INVALID, RemoteOperation.Outcome.ERROR):
        code, _, description = operation.error.partition(": ")
        return JsonResponse({"error": code, "description": description},
                            status=400 if outcome == RemoteOperation.Outcome.INVALID else 502)
    return JsonResponse({"status": "ok", "answer": operation.answer})


def _connector_of(payload: dict) -> int | None:
    connector = payload.get("connectorId")
    return connector if isinstance(connector, int) and not isinstance(connector, bool) and connector > 0 else None


def _timeout(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if 1 <= value <= 120 else None  # also refuses nan and inf
