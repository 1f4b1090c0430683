"""The visitors' pages, on a building's own host. No login: the connector's code opens its page, and the visit's
secret token (returned once, when the card is authorized) is the only key to that visit's status and stop.

    GET  /v/<code>                              the mobile page (connector, status, tariff, typical quote, form)
    GET  /v/<code>/quote?kwh=20&minutes=120     what a session would cost a visitor here (anyone)
    POST /v/<code>/visits                       {"email", "amount"} -> the client secret for Stripe.js
    POST /v/<code>/visits/<token>/start         after Stripe.js confirmed: check the hold, start the charger
    GET  /v/<code>/visits/<token>               status, kWh and cost so far
    POST /v/<code>/visits/<token>/stop          RemoteStopTransaction of this visit's session
    GET  /visitors/labels.pdf[?charger=ID...]   managers: the printable sheet of labels

A code of another building, an unknown code or a token of another visit (or connector) gets 404.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from functools import wraps

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.access import condominium_role_required
from apps.accounts.lockout import client_address
from apps.accounts.selectors import MANAGER
from apps.billing import pricing
from apps.billing.api import BadQuery, _kwh, _minutes
from apps.billing.services import NoTariff, price_quote
from apps.buildings.models import Resident
from apps.payments.stripe_client import get_client
from apps.visitors import labels, ratelimit, services
from apps.visitors.models import Visit, VisitorCode


def _code(code: str) -> VisitorCode:
    found = services.code_connector(code)
    if found is None:
        raise Http404("no such connector")
    return found


def _visit(code: VisitorCode, token: str) -> Visit:
    visit = (Visit.objects.select_related("connector__charge_point", "session")
             .filter(token=token, code=code).first())
    if visit is None:
        raise Http404("no such visit")
    return visit


def _limited(action: str, **values) -> JsonResponse | None:
    if ratelimit.over_limit(action, **values):
        return JsonResponse({"error": "too many requests; wait a few minutes"}, status=429)
    return None


def _answers(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except services.VisitUnavailable as exc:
            return JsonResponse({"error": str(exc)}, status=503)
        except services.VisitRefused as exc:
            return JsonResponse({"error": str(exc)}, status=400)

    return wrapper


def _body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise services.VisitRefused("the body must be JSON") from None
    if not isinstance(data, dict):
        raise services.VisitRefused("the body must be a JSON object")
    return data


@require_GET
def page(request: HttpRequest, code: str) -> HttpResponse:
    # Counted before the code is looked up: guessing codes from one address is limited too.
    if (limited := _limited("page", address=client_address(request), code=code)) is not None:
        return limited
    found = _code(code)
    info = services.connector_page(found)
    try:
        publishable_key = get_client().publishable_key
    except Exception:  # payments not configured: the page still shows the tariff
        publishable_key = ""
    # A resident of the building who scans the label charges on their own account instead (apps/portal decides
    # whether this connector is one they may use).
    resident_start = None
    if request.user.is_authenticated and Resident.objects.filter(user=request.user, is_active=True).exists():
        resident_start = reverse("me-start", args=[found.connector.charge_point.charge_point_id,
                                                   found.connector.connector_id])
    return render(request, "visitors/page.html", {"page": info, "publishable_key": publishable_key,
                                                  "typical_kwh": Decimal(info.typical_energy_wh) / 1000,
                                                  "resident_start": resident_start})


@require_GET
def quote(request: HttpRequest, code: str) -> JsonResponse:
    if (limited := _limited("page", address=client_address(request), code=code)) is not None:
        return limited
    found = _code(code)
    try:
        energy_wh = _kwh(request.GET.get("kwh"))
        minutes = _minutes(request.GET.get("minutes"), "minutes", low=1)
    except BadQuery as bad:
        return JsonResponse({"error": str(bad)}, status=400)
    try:
        result = price_quote(connector=found.connector, resident_id=None, energy_wh=energy_wh, as_resident=False,
                             duration=timedelta(minutes=minutes) if minutes is not None else None)
    except NoTariff as missing:
        return JsonResponse({"error": str(missing)}, status=409)
    priced = result.priced
    return JsonResponse({"tariff": result.tariff_name, "kwh": str(Decimal(result.energy_wh) / 1000),
                         "minutes": int(result.duration.total_seconds() // 60), "status": priced.status,
                         "currency": priced.currency, "total": str(priced.total),
                         "lines": pricing.lines_document(priced)})


@csrf_exempt  # a public form without a session; the visit's secret token guards what follows
@require_POST
@_answers
def authorize(request: HttpRequest, code: str) -> JsonResponse:
    address = client_address(request)
    if (limited := _limited("authorize", address=address, code=code)) is not None:
        return limited
    found = _code(code)
    data = _body(request)
    email = str(data.get("email") or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise services.VisitRefused("email: a valid e-mail address is required for the receipt") from None
    raw = data.get("amount")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise services.VisitRefused('amount is required, as a string such as "30.00"')
    try:
        amount = Decimal(str(raw).strip())
    except InvalidOperation:
        raise services.VisitRefused(f"amount {raw!r} is not a number") from None
    if not amount.is_finite():
        raise services.VisitRefused(f"amount {raw!r} is not a number")
    started = services.visit_create(code=found, email=email, amount=amount, address=address)
    return JsonResponse({"visit": started.visit.token, "client_secret": started.client_secret,
                         "publishable_key": started.publishable_key,
                         "amount": str(started.visit.authorized_amount), "currency": started.visit.currency},
                        status=201)


@csrf_exempt
@require_POST
@_answers
def start(request: HttpRequest, code: str, token: str) -> JsonResponse:
    if (limited := _limited("start", address=client_address(request), visit=token)) is not None:
        return limited
    visit = _visit(_code(code), token)
    visit = services.visit_start(connection.schema_name, visit_pk=visit.pk)
    return JsonResponse({"status": visit.status, "charger_answer": visit.charger_answer},
                        status=200 if visit.status not in (Visit.Status.CANCELLED, Visit.Status.FAILED) else 409)


@require_GET
def status(request: HttpRequest, code: str, token: str) -> JsonResponse:
    if (limited := _limited("status", address=client_address(request), visit=token)) is not None:
        return limited
    visit = _visit(_code(code), token)
    return JsonResponse(services.visit_progress(visit))


@csrf_exempt
@require_POST
@_answers
def stop(request: HttpRequest, code: str, token: str) -> JsonResponse:
    if (limited := _limited("stop", address=client_address(request), visit=token)) is not None:
        return limited
    visit = _visit(_code(code), token)
    answer = services.visit_stop(connection.schema_name, visit_pk=visit.pk)
    return JsonResponse({"charger_answer": answer}, status=200 if answer == "Accepted" else 409)


@condominium_role_required(MANAGER)
@require_GET
def labels_pdf(request: HttpRequest) -> HttpResponse:
    chargers = request.GET.getlist("charger") or None  # a new cabinet's labels only
    response = HttpResponse(labels.render_pdf(chargers=chargers), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="visitor-labels-{request.tenant.slug}.pdf"'
    return response


@condominium_role_required(MANAGER)
@require_GET
def visits_for_managers(request: HttpRequest) -> JsonResponse:
    """The latest visits, with what needs a manager: shortfalls (priced above the hold), held pricing, failures."""
    rows = services.visits_recent(limit=200)
    return JsonResponse({"visits": rows, "attention": [row for row in rows if row["needs_attention"]]})
