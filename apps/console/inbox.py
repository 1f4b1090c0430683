"""The building's alerts inbox: every alert with who took it in hand and how it ended; managers acknowledge and
resolve (with a note), and choose which kinds reach them by e-mail. Board members read it; anyone else: 404.

    GET       /alerts/?state=open|acknowledged|resolved|all
    POST      /alerts/<id>/acknowledge
    GET/POST  /alerts/<id>/resolve            a note says what was done
    GET/POST  /alerts/preferences             e-mail per kind of alert (this manager, this building)
"""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER
from apps.alerts import services
from apps.alerts.models import Alert
from apps.console.views import can_operate

STATES = {
    "open": Q(resolved_at__isnull=True, acknowledged_at__isnull=True),
    "acknowledged": Q(resolved_at__isnull=True, acknowledged_at__isnull=False),
    "resolved": Q(resolved_at__isnull=False),
    "all": Q(),
}
PAGE = 200


@condominium_role_required(MANAGER, BOARD)
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    state = request.GET.get("state", "open")
    if state not in STATES:
        state = "open"
    counts = Alert.objects.aggregate(**{name: Count("pk", filter=q) for name, q in STATES.items()})
    alerts = list(Alert.objects.filter(STATES[state]).order_by("-raised_at", "-pk")[:PAGE])
    return render(request, "console/alerts.html", {
        "alerts": alerts, "state": state, "counts": counts, "can_act": can_operate(request),
        "states": [(name, counts[name]) for name in STATES]})


def _manager(request: HttpRequest) -> None:
    if not can_operate(request):
        raise Http404("not found")  # board members read the inbox; managers act on it


@condominium_role_required(MANAGER, BOARD)
@require_POST
def acknowledge(request: HttpRequest, alert_pk: int) -> HttpResponse:
    _manager(request)
    get_object_or_404(Alert, pk=alert_pk)
    try:
        alert = services.alert_acknowledge(alert_pk=alert_pk, by_email=request.user.email)
    except services.AlertRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(request, _("Acknowledged: %(what)s") % {"what": alert.message})
    return redirect("console-alerts")


@condominium_role_required(MANAGER, BOARD)
@require_http_methods(["GET", "POST"])
def resolve(request: HttpRequest, alert_pk: int) -> HttpResponse:
    _manager(request)
    alert = get_object_or_404(Alert, pk=alert_pk)
    error = ""
    if request.method == "POST":
        try:
            services.alert_close(alert_pk=alert_pk, by_email=request.user.email, note=request.POST.get("note", ""))
        except services.AlertRefused as refusal:
            error = str(refusal)
        else:
            messages.success(request, _("Resolved: %(what)s") % {"what": alert.message})
            return redirect("console-alerts")
    return render(request, "console/alert_resolve.html", {"alert": alert, "error": error},
                  status=400 if error else 200)


@condominium_role_required(MANAGER, BOARD)
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest) -> HttpResponse:
    _manager(request)
    if request.method == "POST":
        try:
            services.email_preferences_save(user_id=request.user.pk, wanted=set(request.POST.getlist("email")))
        except services.AlertRefused as refusal:
            messages.error(request, str(refusal))
        else:
            messages.success(request, _("Your e-mail preferences for this building are saved."))
            return redirect("console-alert-preferences")
    chosen = services.email_preferences(request.user.pk)
    kinds = [(kind.value, kind.label, chosen[kind.value]) for kind in Alert.Kind]
    return render(request, "console/alert_preferences.html", {"kinds": kinds})
