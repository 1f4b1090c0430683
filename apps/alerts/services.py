"""Raising and resolving alerts. Call inside the condominium's schema."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.utils import timezone, translation

from apps.alerts.models import Alert, AlertEmailPreference

logger = logging.getLogger(__name__)


def alert_raise(
    *, kind: str, message: str, charge_point_id: str = "", connector_number: int | None = None,
    severity: str = Alert.Severity.WARNING, details: dict | None = None,
) -> Alert:
    """Open an alert, or refresh the open one for the same subject."""
    now = timezone.now()
    subject = {"kind": kind, "charge_point_id": charge_point_id, "connector_number": connector_number}
    updated = Alert.objects.filter(resolved_at__isnull=True, **subject).update(
        last_seen_at=now, occurrences=F("occurrences") + 1, message=message, details=details or {}
    )
    if not updated:
        try:
            with transaction.atomic():
                Alert.objects.create(
                    **subject, severity=severity, message=message, details=details or {}, raised_at=now,
                    last_seen_at=now,
                )
                logger.warning("alert %s: %s", kind, message)
        except IntegrityError:
            # Another process opened it in the meantime; refresh that one.
            Alert.objects.filter(resolved_at__isnull=True, **subject).update(
                last_seen_at=now, occurrences=F("occurrences") + 1
            )
    return Alert.objects.get(resolved_at__isnull=True, **subject)


def alert_resolve(*, kind: str, charge_point_id: str = "", connector_number: int | None = None) -> int:
    return Alert.objects.filter(
        resolved_at__isnull=True, kind=kind, charge_point_id=charge_point_id, connector_number=connector_number
    ).update(resolved_at=timezone.now())


def alerts_resolve(*, kind: str, charge_point_ids: list[str]) -> int:
    """``alert_resolve`` for many chargers' own alerts (no connector) at once: one query."""
    if not charge_point_ids:
        return 0
    return Alert.objects.filter(
        resolved_at__isnull=True, kind=kind, charge_point_id__in=charge_point_ids, connector_number=None
    ).update(resolved_at=timezone.now())


# --- the managers' inbox ------------------------------------------------------------------------------------------


class AlertRefused(Exception):
    """What a manager asked cannot be done to this alert; the message says why."""


def alert_acknowledge(*, alert_pk: int, by_email: str, now: datetime | None = None) -> Alert:
    """A manager takes the alert in hand: it stays open (the condition is still there) but is no longer new."""
    changed = Alert.objects.filter(pk=alert_pk, resolved_at__isnull=True, acknowledged_at__isnull=True).update(
        acknowledged_at=now or timezone.now(), acknowledged_by=by_email[:254])
    alert = Alert.objects.get(pk=alert_pk)
    if not changed and alert.resolved_at is not None:
        raise AlertRefused("this alert is resolved already")
    return alert


def alert_close(*, alert_pk: int, by_email: str, note: str, now: datetime | None = None) -> Alert:
    """A manager resolves the alert by hand, saying why. Should the condition persist, the platform raises a new
    alert for it; the closed one keeps its history."""
    note = note.strip()
    if not note:
        raise AlertRefused("say what was done (a note is required to resolve an alert by hand)")
    now = now or timezone.now()
    changed = Alert.objects.filter(pk=alert_pk, resolved_at__isnull=True).update(
        resolved_at=now, resolved_by=by_email[:254], resolution_note=note[:300],
        acknowledged_at=Coalesce(F("acknowledged_at"), Value(now)),
        acknowledged_by=Case(When(acknowledged_by="", then=Value(by_email[:254])), default=F("acknowledged_by")))
    if not changed:
        raise AlertRefused("this alert is resolved already")
    return Alert.objects.get(pk=alert_pk)


# Kinds mailed to the building's managers unless they say otherwise: what stops charging or the balancer's safety.
# A session held for review, one left open and sub-meter losses wait for the inbox unless a manager asks.
EMAIL_BY_DEFAULT = frozenset(Alert.Kind) - {Alert.Kind.SESSION_REVIEW, Alert.Kind.STALE_SESSION,
                                            Alert.Kind.EV_LOSSES}


def email_preferences(user_id: int) -> dict[str, bool]:
    """Every kind of alert, and whether this manager wants an e-mail for it here."""
    chosen = dict(AlertEmailPreference.objects.filter(user_id=user_id).values_list("kind", "email"))
    return {kind.value: chosen.get(kind.value, kind in EMAIL_BY_DEFAULT) for kind in Alert.Kind}


def email_preferences_save(*, user_id: int, wanted: set[str]) -> dict[str, bool]:
    """Keep the manager's choice for every kind: an e-mail for those in ``wanted``, none for the others."""
    unknown = wanted - {kind.value for kind in Alert.Kind}
    if unknown:
        raise AlertRefused(f"unknown kinds of alert: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        for kind in Alert.Kind:
            AlertEmailPreference.objects.update_or_create(user_id=user_id, kind=kind.value,
                                                          defaults={"email": kind.value in wanted})
    return email_preferences(user_id)


EMAIL_WITHIN = timedelta(hours=6)  # an alert older than this when first seen by the mailer is not mailed late


def alert_emails_send(*, managers: list, building: str, inbox_url: str, now: datetime | None = None) -> int:
    """Mail each new alert of the current building, once, to the managers whose preferences ask for its kind.
    Each alert is claimed before it is sent (a conditional update), so two mailers never send it twice; one that
    fails gives its claim back for the next run. Returns the e-mails sent."""
    now = now or timezone.now()
    Alert.objects.filter(emailed_at__isnull=True, raised_at__lt=now - EMAIL_WITHIN).update(emailed_at=now)
    sent = 0
    wanted: dict[int, dict[str, bool]] = {}  # each manager's preferences, read once per run
    for alert in Alert.objects.filter(emailed_at__isnull=True).order_by("raised_at", "pk"):
        if not Alert.objects.filter(pk=alert.pk, emailed_at__isnull=True).update(emailed_at=now):
            continue  # another mailer has it
        try:
            for manager in managers:
                if manager.pk not in wanted:
                    wanted[manager.pk] = email_preferences(manager.pk)
                if not wanted[manager.pk].get(alert.kind, False):
                    continue
                language = manager.preferred_language or "en"
                with translation.override(language):
                    context = {"alert": alert, "building": building, "inbox_url": inbox_url}
                    subject = " ".join(render_to_string("alerts/email_subject.txt", context).split())
                    body = render_to_string("alerts/email_body.txt", context)
                EmailMessage(subject, body, to=[manager.email], headers={"Content-Language": language}).send()
                sent += 1
        except Exception:
            Alert.objects.filter(pk=alert.pk, emailed_at=now).update(emailed_at=None)
            raise
    return sent
