from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import PasswordResetConfirmView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts import handoff, services
from apps.accounts.forms import ProfileForm
from apps.accounts.models import User
from apps.accounts.selectors import condominium_roles, visible_condominiums
from apps.accounts.tokens import invitation_tokens
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


class InvitationView(PasswordResetConfirmView):
    """Choose a first password from an invitation link (one-time, valid INVITATION_VALID_DAYS).

    Django's reset view does the rest: it moves the token from the URL into the
    session (so it does not leak through the Referer header) and rejects it once
    the password is set, because the token hashes the password.
    """

    token_generator = invitation_tokens
    template_name = "accounts/invitation_accept.html"
    success_url = reverse_lazy("password_reset_complete")

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """The person's own name and language, on the company's site or a building's site where they have a role."""
    tenant = getattr(request, "tenant", None)
    if tenant is not None and tenant.schema_name != "public" and not condominium_roles(request.user, tenant):
        raise Http404("not found")
    user = request.user
    form = ProfileForm(request.POST or None, initial={"name": user.name, "preferred_language": user.preferred_language})
    if request.method == "POST" and form.is_valid():
        try:
            services.profile_update(user=user, name=form.cleaned_data["name"],
                                    language=form.cleaned_data["preferred_language"])
        except services.ProfileRefused as refusal:
            form.add_error("preferred_language", str(refusal))
        else:
            messages.success(request, _("Your profile is saved."))
            return redirect("profile")
    return render(request, "accounts/profile.html", {"form": form}, status=400 if form.errors else 200)
