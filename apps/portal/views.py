"""The resident's pages on their building's host, made for a phone first:

    GET       /me/                                  my charging: sessions under way (live), where I can charge,
                                                    my cards, recent sessions and their cost, statements, tariff
    GET/POST  /me/charge/<charger>/<connector>/     start a session there (GET asks, POST sends)
    GET/POST  /me/sessions/<id>/stop/               stop my session
    GET/POST  /me/cards/<id tag>/lost/              report a card lost: blocked on every charger at once
    GET       /me/statements/<id>.pdf               a statement of mine as PDF
    POST      /me/autopay/<resident id>/            autopay on with a saved card (card=<id>) or off (card=off)

Residents of the building only; a user with no household here gets 404, as does anything of another household.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import RESIDENT
from apps.buildings.models import IdTag
from apps.ocpp import live
from apps.ocpp.models import RemoteOperation
from apps.payments import services as payments
from apps.portal import selectors, services
from apps.statements.services import statement_render


def _households(request: HttpRequest) -> list:
    residents = selectors.households(request.user)
    if not residents:
        raise Http404("not found")  # the role without a home here (moved out): nothing to show
    return residents


@condominium_role_required(RESIDENT)
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    residents = _households(request)
    ids = [r.pk for r in residents]
    schema = request.tenant.schema_name
    now = timezone.now()
    spots = selectors.places(residents)
    states = live.read_building_live({p.charge_point_id for p in spots})
    connectors = selectors.connector_states([p.key for p in spots], schema, states)
    sessions = selectors.open_sessions(ids)
    busy = {s.key for s in sessions}
    places = []
    for spot in spots:
        state = connectors.get(spot.key)
        online = bool(state and state.online)
        status = state.status if state is not None and online else ""
        places.append({"place": spot, "online": online, "status": status,
                       "startable": online and status in services.STARTABLE and spot.key not in busy})
    own = next((p for p in spots if p.mine), spots[0] if spots else None)
    tariff_name, tariff_lines = selectors.tariff_in_force(residents[0], own.pk if own else None, now)
    return render(request, "portal/home.html", {
        "households": [{"resident": r, "account": selectors.account(r)} for r in residents],
        "cards": selectors.session_cards(sessions, schema, now=now),
        "places": places, "own_places": [p for p in places if p["place"].mine],
        "shared_places": [p for p in places if not p["place"].mine],
        "tags": selectors.id_tags(ids), "recent": selectors.recent_sessions(ids),
        "statements": list(selectors.statements(ids)[:24]),
        "tariff_name": tariff_name, "tariff_lines": tariff_lines,
    })


def _outcome(request: HttpRequest, operation: RemoteOperation, done: str) -> None:
    if operation.outcome == RemoteOperation.Outcome.ACCEPTED:
        messages.success(request, done)
    else:
        messages.error(request, _("The charger did not do it: %(outcome)s. %(detail)s") % {
            "outcome": operation.get_outcome_display(), "detail": operation.error})


@condominium_role_required(RESIDENT)
@require_http_methods(["GET", "POST"])
def start(request: HttpRequest, charge_point_id: str, connector: int) -> HttpResponse:
    residents = _households(request)
    spot = selectors.place(residents, charge_point_id, connector)
    if spot is None:
        raise Http404("not found")
    if request.method == "GET":
        name, lines = selectors.tariff_in_force(residents[0], spot.pk, timezone.now())
        return render(request, "portal/confirm.html", {
            "title": _("Start charging at %(where)s?") % {"where": spot.label},
            "details": [_("Plug in first. The session is started with your account's app card.")],
            "tariff_name": name, "tariff_lines": lines, "button": _("Start charging")})
    try:
        operation = services.charging_start(user=request.user, residents=residents, charge_point_id=charge_point_id,
                                            number=connector, schema_name=request.tenant.schema_name)
    except services.Refused as refusal:
        messages.error(request, str(refusal))
        return redirect("me")
    _outcome(request, operation, _("The charger accepted: your session starts in a moment."))
    return redirect("me")


@condominium_role_required(RESIDENT)
@require_http_methods(["GET", "POST"])
def stop(request: HttpRequest, session_pk: int) -> HttpResponse:
    residents = _households(request)
    session = services.own_session(residents, session_pk)
    if session is None:
        raise Http404("not found")
    label = selectors.connector_label(session.charge_point.charge_point_id, session.connector_number,
                                      session.connector.parking_spot.label if session.connector
                                      and session.connector.parking_spot else "")
    if request.method == "GET":
        return render(request, "portal/confirm.html", {
            "title": _("Stop charging at %(where)s?") % {"where": label},
            "details": [_("Unplug once the charger has stopped.")], "button": _("Stop charging")})
    try:
        operation = services.charging_stop(user=request.user, residents=residents, session_pk=session_pk,
                                           schema_name=request.tenant.schema_name)
    except services.Refused as refusal:
        messages.error(request, str(refusal))
        return redirect("me")
    _outcome(request, operation, _("The charger accepted: the session is ending."))
    return redirect("me")


@condominium_role_required(RESIDENT)
@require_http_methods(["GET", "POST"])
def card_lost(request: HttpRequest, id_tag: str) -> HttpResponse:
    residents = _households(request)
    tag = IdTag.objects.filter(resident__in=residents, id_tag=id_tag.strip().upper()).first()
    if tag is None:
        raise Http404("not found")
    if request.method == "GET":
        return render(request, "portal/confirm.html", {
            "title": _("Report card %(card)s lost?") % {"card": tag.id_tag},
            "details": [_("Every charger of the building refuses it from now on. Only the building's manager can "
                          "make it work again.")],
            "button": _("Report it lost"), "danger": True})
    try:
        services.card_report_lost(user=request.user, residents=residents, id_tag=tag.id_tag)
    except services.Refused as refusal:
        messages.error(request, str(refusal))
        return redirect("me")
    messages.success(request, _("Card %(card)s is blocked on every charger of the building.") % {"card": tag.id_tag})
    return redirect("me")


@condominium_role_required(RESIDENT)
@require_GET
def statement_pdf(request: HttpRequest, statement_pk: int) -> HttpResponse:
    residents = _households(request)
    statement = selectors.statement_of([r.pk for r in residents], statement_pk)
    if statement is None:
        raise Http404("not found")
    document = statement_render(statement_id=statement.pk)
    response = HttpResponse(bytes(document.pdf), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{statement.number}.pdf"'
    return response


@condominium_role_required(RESIDENT)
@require_POST
def autopay(request: HttpRequest, resident_pk: int) -> HttpResponse:
    resident = next((r for r in _households(request) if r.pk == resident_pk), None)
    if resident is None:
        raise Http404("not found")
    raw = request.POST.get("card", "")
    if raw != "off" and not raw.isdigit():
        messages.error(request, _("Choose a saved card, or turn autopay off."))
        return redirect("me")
    try:
        card = payments.autopay_set(resident=resident, card_pk=None if raw == "off" else int(raw))
    except payments.PaymentError:
        raise Http404("not found") from None  # not one of this household's cards
    if card is None:
        messages.success(request, _("Autopay is off: your statements are no longer charged to a card."))
    else:
        messages.success(request, _("Autopay is on: your statements are charged to %(card)s when they are due.") % {
            "card": card})
    return redirect("me")
