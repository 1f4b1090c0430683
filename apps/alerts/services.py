"""Raising and resolving alerts. Call inside the condominium's schema."""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.alerts.models import Alert

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
