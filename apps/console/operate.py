"""Remote operations from the building console: a confirmation page per operation (GET), the operation itself
(POST, then back to the trail with the charger's answer), and the trail of every operation sent to the building's
chargers (who, when, what, the answer). Company managers operate; board members read the trail; anyone else: 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER
from apps.charging.models import ChargingSession, Connector
from apps.console.views import can_operate
from apps.ocpp.models import RemoteOperation
from apps.ocpp.operations import CONSOLE_OPERATIONS, operation_run, operations_recent


@condominium_role_required(MANAGER, BOARD)
@require_http_methods(["GET", "POST"])
def operate(request: HttpRequest, charge_point_id: str, connector: int, key: str) -> HttpResponse:
    if not can_operate(request):
        raise Http404("not found")  # board members read the trail; they do not operate
    op = CONSOLE_OPERATIONS.get(key)
    target = _connector(charge_point_id, connector)
    if op is None or target is None:
        raise Http404("not found")
    session = (ChargingSession.objects.filter(connector=target, stopped_at__isnull=True)
               .select_related("resident__user", "resident__unit").order_by("-started_at", "-pk").first())
    missing = op.needs_session and (session is None or session.transaction_id is None)
    if request.method == "GET":
        return render(request, "console/operate.html", {
            "op": op, "connector": target, "session": session, "missing_session": missing})
    if missing:
        messages.error(request, _("No session is under way on %(connector)s: nothing was sent.") % {
            "connector": f"{charge_point_id} #{connector}"})
        return redirect("console-operations")
    operation = operation_run(
        user=request.user, charge_point_id=charge_point_id, action=op.action,
        payload=op.payload(connector, session.transaction_id if session is not None else None), via="console",
        schema_name=request.tenant.schema_name, connector_number=None if op.whole_charger else connector)
    text = _("%(what)s on %(where)s: %(outcome)s.") % {
        "what": op.action, "where": charge_point_id if op.whole_charger else f"{charge_point_id} #{connector}",
        "outcome": operation.get_outcome_display()}
    if operation.outcome == RemoteOperation.Outcome.ACCEPTED:
        messages.success(request, text)
    else:
        messages.error(request, f"{text} {operation.error}".strip())
    return redirect("console-operations")


def _connector(charge_point_id: str, number: int) -> Connector | None:
    """The building's connector (in service, on a charger in service), with its charger and spot."""
    return (Connector.objects.filter(charge_point__charge_point_id=charge_point_id, connector_id=number,
                                     removed_at__isnull=True, charge_point__removed_at__isnull=True)
            .select_related("charge_point", "parking_spot").first())


@condominium_role_required(MANAGER, BOARD)
@require_GET
def operations(request: HttpRequest) -> HttpResponse:
    return render(request, "console/operations.html", {"operations": operations_recent()})


@condominium_role_required(MANAGER, BOARD)
@require_GET
def menu(request: HttpRequest, charge_point_id: str, connector: int) -> HttpResponse:
    """The operations offered for a connector (and its charger), each leading to its confirmation."""
    if not can_operate(request):
        raise Http404("not found")
    target = _connector(charge_point_id, connector)
    if target is None:
        raise Http404("not found")
    return render(request, "console/operate_menu.html", {
        "connector": target, "for_connector": [op for op in CONSOLE_OPERATIONS.values() if not op.whole_charger],
        "for_charger": [op for op in CONSOLE_OPERATIONS.values() if op.whole_charger]})
