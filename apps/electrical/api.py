"""The site meter's HTTP push, on the building's own host (docs/site-meter.md).

    POST /api/v1/site-meters/<meter id>/readings
    Authorization: Bearer <the meter's token>
    {"timestamp": "2026-11-30T01:15:00Z", "current_a": [41.2, 38.0, 44.9]}   or   {"readings": [...]}

No session, no CSRF token: the meter authenticates with its bearer token on every request.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.accounts.lockout import client_address
from apps.electrical.services import site_meter_push


@csrf_exempt
@require_POST
def site_meter_readings(request: HttpRequest, meter_key: str) -> JsonResponse:
    answer = site_meter_push(
        meter_key=meter_key, authorization=request.headers.get("Authorization", ""),
        address=client_address(request) or "", body=request.body,
    )
    response = JsonResponse(answer.body, status=answer.status)
    if answer.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="site-meter"'
    return response
