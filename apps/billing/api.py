"""What a session would cost before plugging in, on a building's own host.

    GET /api/v1/connectors/<chargePointId>/<connectorId>/quote?kwh=20&start=2026-03-10T21:00&minutes=120
        optional: idle_minutes (plugged in after the car is full), as=resident|visitor

For the building's residents, board members and managers; everybody else gets 404. A resident is quoted
their own tariff (their named group's, if any); others see a resident's price unless they ask
``as=visitor``. ``start`` is the building's local time unless it carries an offset; default now.
``minutes`` defaults to the time the connector needs at full power.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.http import Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.billing import pricing
from apps.billing.services import NoTariff, price_quote
from apps.buildings.models import Resident
from apps.charging.models import Connector

MAX_KWH = Decimal(1000)
MAX_MINUTES = 7 * 24 * 60


class BadQuery(ValueError):
    pass


@condominium_role_required()
@require_GET
def connector_quote(request: HttpRequest, charge_point_id: str, connector_id: int) -> JsonResponse:
    connector = (
        Connector.objects.select_related("charge_point")
        .filter(charge_point__charge_point_id__iexact=charge_point_id, connector_id=connector_id,
                removed_at__isnull=True, charge_point__removed_at__isnull=True)
        .first()
    )
    if connector is None:
        raise Http404("no such connector")
    zone = ZoneInfo(request.tenant.timezone)
    try:
        energy_wh = _kwh(request.GET.get("kwh"))
        start = _start(request.GET.get("start"), zone)
        minutes = _minutes(request.GET.get("minutes"), "minutes", low=1)
        idle = _minutes(request.GET.get("idle_minutes"), "idle_minutes", low=0)
        audience = request.GET.get("as", "")
        if audience not in ("", "resident", "visitor"):
            raise BadQuery("as must be resident or visitor")
    except BadQuery as bad:
        return JsonResponse({"error": str(bad)}, status=400)
    resident_id = None
    if audience != "visitor":
        resident_id = (Resident.objects.filter(user=request.user, is_active=True).order_by("pk")
                       .values_list("pk", flat=True).first())
    try:
        quote = price_quote(
            connector=connector, resident_id=resident_id, energy_wh=energy_wh, start=start,
            duration=timedelta(minutes=minutes) if minutes is not None else None,
            idle=timedelta(minutes=idle or 0), as_resident=audience != "visitor",
        )
    except NoTariff as missing:
        return JsonResponse({"error": str(missing)}, status=409)
    priced = quote.priced
    return JsonResponse({
        "charger": connector.charge_point.charge_point_id, "connector": connector.connector_id,
        "tariff": {"code": quote.tariff_code, "name": quote.tariff_name, "version": quote.version,
                   "why": quote.why},
        "start": quote.start.astimezone(zone).isoformat(), "minutes": int(quote.duration.total_seconds() // 60),
        "kwh": str(Decimal(quote.energy_wh) / 1000), "status": priced.status, "hold_reason": priced.hold_reason,
        "currency": priced.currency, "subtotal": str(priced.subtotal), "tax": str(priced.tax),
        "total": str(priced.total), "lines": pricing.lines_document(priced), "notes": list(priced.notes),
    })


def _kwh(raw: str | None) -> int:
    if raw is None or not raw.strip():
        raise BadQuery("kwh is required: the energy to quote, e.g. kwh=20")
    try:
        kwh = Decimal(raw.strip())
    except InvalidOperation:
        raise BadQuery(f"kwh {raw!r} is not a number") from None
    if not kwh.is_finite() or not 0 < kwh <= MAX_KWH:
        raise BadQuery(f"kwh must be above 0 and at most {MAX_KWH}")
    return int((kwh * 1000).to_integral_value())


def _start(raw: str | None, zone: ZoneInfo) -> datetime | None:
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if "T" in text:
        text = text.replace(" ", "+")  # an offset's + sent unencoded arrives as a space
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"start {raw!r} is not a date and time (YYYY-MM-DDTHH:MM, local, or with an offset)") from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _minutes(raw: str | None, name: str, *, low: int) -> int | None:
    if raw is None or not raw.strip():
        return None
    if not raw.strip().isdigit() or not low <= int(raw) <= MAX_MINUTES:
        raise BadQuery(f"{name} must be a whole number of minutes from {low} to {MAX_MINUTES}")
    return int(raw)
