"""Changes to people's accounts: invitations to choose a password.

Commissioning creates people without a password; ``user_invite`` sends them a
one-time link to choose one. The manager screens will call the same service.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.accounts.models import CompanyMembership, CondominiumMembership, User
from apps.accounts.tokens import invitation_tokens
from apps.core.tenants import in_public_schema
from apps.tenancy.models import Condominium, Domain

log = logging.getLogger(__name__)


class InvitationRefused(Exception):
    """The person cannot be invited; the message says who and why."""


@dataclass(frozen=True)
class Invitation:
    email: str
    url: str
    language: str


@dataclass
class InvitationRound:
    """What ``invite_new_people`` did: who was invited, and whose e-mail could not be sent."""

    invited: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _home(user: User) -> tuple[str, Condominium | None]:
    """Where the person logs in: the company site for managers (and platform staff), else their building.

    Sessions are per host, so a resident who chose a password on the company site
    would land on a page that lists buildings instead of their own; a manager starts
    from the company site, which leads to every building of the company.
    """
    with in_public_schema():
        if user.is_staff or CompanyMembership.objects.filter(user=user).exists():
            return settings.PUBLIC_HOST, None
        membership = (
            CondominiumMembership.objects.filter(user=user).select_related("condominium").order_by("created_at", "id")
        ).first()
        if membership is not None:
            domain = Domain.objects.filter(tenant=membership.condominium).order_by("-is_primary", "id").first()
            if domain is not None:
                return domain.domain, membership.condominium
    return settings.PUBLIC_HOST, None


def _language(user: User, condominium: Condominium | None) -> str:
    known = {code for code, _ in settings.LANGUAGES}
    for candidate in (user.preferred_language, condominium.locale if condominium else ""):
        if candidate in known:
            return candidate
    return settings.LANGUAGE_CODE


def invitation_url(user: User, host: str) -> str:
    base = urlsplit(settings.PUBLIC_URL)
    port = f":{base.port}" if base.port else ""
    path = reverse(
        "invitation",
        urlconf="apps.accounts.urls",  # routed on the company site and on every building's site
        kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)), "token": invitation_tokens.make_token(user)},
    )
    return f"{base.scheme}://{host}{port}{path}"


def user_invite(*, user: User) -> Invitation:
    """E-mail ``user`` a one-time link to choose a password, in their language. Raises on SMTP failure."""
    if not user.is_active:
        raise InvitationRefused(f"{user.email} is deactivated; reactivate the account before inviting")
    host, condominium = _home(user)
    language = _language(user, condominium)
    url = invitation_url(user, host)
    context = {
        "name": user.name,
        "url": url,
        "valid_days": settings.INVITATION_VALID_DAYS,
        "place": condominium.name if condominium else "",
        "email": user.email,
    }
    with translation.override(language):
        subject = " ".join(render_to_string("accounts/invitation_subject.txt", context).split())
        body = render_to_string("accounts/invitation_email.txt", context)
    EmailMessage(subject, body, to=[user.email], headers={"Content-Language": language}).send()
    User.objects.filter(pk=user.pk).update(invited_at=timezone.now())
    return Invitation(email=user.email, url=url, language=language)


def user_invite_by_email(*, email: str) -> Invitation:
    """Send (again) the invitation of the person with this e-mail address."""
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        raise InvitationRefused(f"no person with the e-mail address {email!r}")
    return user_invite(user=user)


def people_to_invite(*, emails: list[str]) -> list[str]:
    """Those of ``emails`` who are active and have neither chosen a password nor been invited."""
    candidates = User.objects.filter(email__in=emails, is_active=True, invited_at__isnull=True).order_by("email")
    return [user.email for user in candidates if not user.has_usable_password()]


def invite_new_people(*, emails: list[str]) -> InvitationRound:
    """Invite those of ``emails`` who have never chosen a password nor been invited.

    Safe to run again: people already invited, or with a password, are skipped. A
    failed e-mail is reported, not raised, so the others still get theirs; the
    person stays uninvited and is tried again next time.
    """
    result = InvitationRound()
    for user in User.objects.filter(email__in=people_to_invite(emails=emails)):
        try:
            user_invite(user=user)
        except (smtplib.SMTPException, OSError) as exc:
            log.warning("invitation to %s failed: %s", user.email, exc)
            result.failed.append(f"{user.email}: {exc}")
        else:
            result.invited.append(user.email)
    return result


class ProfileRefused(ValueError):
    """What cannot be saved, in words."""


def profile_update(*, user: User, name: str, language: str) -> User:
    """The person's own name and language ("" for the building's)."""
    known = {code for code, _ in settings.LANGUAGES}
    if language and language not in known:
        raise ProfileRefused(f"language {language!r} is not one of {', '.join(sorted(known))}")
    user.name, user.preferred_language = name.strip()[:200], language
    user.save(update_fields=["name", "preferred_language"])
    return user
