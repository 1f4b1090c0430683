from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from apps.accounts import handoff
from apps.accounts.models import User
from apps.accounts.selectors import condominium_roles, visible_condominiums
from apps.core.selectors import condominium_links


@require_GET
@login_required
def go_to_condominium(request: HttpRequest, slug: str) -> HttpResponse:
    """From the company site to a building's site, staying logged in."""
    condominium = visible_condominiums(request.user).filter(slug=slug).first()
    links = condominium_links(request, [condominium]) if condominium else []
    if not links or links[0].url is None:
        raise Http404("not found")
    ticket = handoff.issue_ticket(request.user.pk, condominium.pk)
    return redirect(f"{links[0].url}accounts/handoff/?ticket={ticket}")


@require_GET
def redeem_handoff(request: HttpRequest) -> HttpResponse:
    tenant = getattr(request, "tenant", None)
    if tenant is None:
        raise Http404("not found")
    user_id = handoff.redeem_ticket(request.GET.get("ticket", ""), tenant.pk)
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id else None
    if user is None:
        messages.info(request, _("That link has expired. Please log in."))
        return redirect("login")
    if not condominium_roles(user, tenant):
        raise Http404("not found")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("home")
