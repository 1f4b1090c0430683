"""What a resident wants from their car's session, on the building's own host.

    GET /api/v1/sessions/<session id>/needs
    PUT /api/v1/sessions/<session id>/needs   {"energy_wh": 20000, "ready_by": "2026-03-11T07:00"}

Only the resident whose card started the session (anyone else in the building, and everybody from another
building, gets 404). ``energy_wh``: the energy wanted from this session in total; ``ready_by``: when the car
should have it, the building's local time unless it carries an offset; null (or absent) clears either, and
the load balancer then estimates it (docs/load-balancing.md, "Weights from demand"). The session must be
open (409 once it has ended).
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

from django.http import Http404, HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from apps.accounts.access import condominium_role_required
from apps.charging.models import ChargingSession
from apps.charging.services import NeedsRefused, SessionEnded, session_needs_set


class BadBody(ValueError):
    pass


@condominium_role_required()
@require_http_methods(["GET", "PUT"])
def session_needs(request: HttpRequest, session_pk: int) -> JsonResponse:
    session = ChargingSession.objects.filter(
        pk=session_pk, resident__user=request.user, resident__is_active=True).first()
    if session is None:
        raise Http404("no such session")
    zone = ZoneInfo(request.tenant.timezone)
    if request.method == "PUT":
        try:
            energy_wh, ready_by = _parse(request.body, zone)
            session = session_needs_set(session_pk=session.pk, wanted_energy_wh=energy_wh, ready_by=ready_by,
                                        now=timezone.now())
        except BadBody as bad:
            return JsonResponse({"error": str(bad)}, status=400)
        except NeedsRefused as refused:
            return JsonResponse({"error": str(refused)}, status=409 if isinstance(refused, SessionEnded) else 400)
    return JsonResponse({
        "session": session.pk, "open": session.stopped_at is None, "energy_wh": session.wanted_energy_wh,
        "ready_by": session.ready_by.astimezone(zone).isoformat() if session.ready_by else None,
        "energy_so_far_wh": session.energy_wh,
    })


def _parse(body: bytes, zone: ZoneInfo) -> tuple[int | None, datetime | None]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise BadBody("the body must be JSON") from None
    if not isinstance(data, dict):
        raise BadBody("the body must be a JSON object")
    unknown = set(data) - {"energy_wh", "ready_by"}
    if unknown:
        raise BadBody(f"unknown fields: {', '.join(sorted(unknown))}")
    energy = data.get("energy_wh")
    if energy is not None and (isinstance(energy, bool) or not isinstance(energy, int)):
        raise BadBody("energy_wh must be a whole number of Wh, or null")
    raw = data.get("ready_by")
    if raw is None:
        return energy, None
    if not isinstance(raw, str):
        raise BadBody("ready_by must be a date and time (YYYY-MM-DDTHH:MM), or null")
    try:
        moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadBody(f"ready_by {raw!r} is not a date and time (YYYY-MM-DDTHH:MM, local, or with an offset)") from None
    return energy, moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
