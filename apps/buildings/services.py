"""Residents' cards and account standing. Call inside the condominium's schema.

Every change that alters who may charge announces it (apps.buildings.events),
so that the chargers' local authorization lists are brought up to date once it
commits (the chargers answer from those lists while the building's internet is down).
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone

from apps.buildings.events import cards_changed
from apps.buildings.models import AccountStanding, IdTag, Resident

logger = logging.getLogger(__name__)


def _set_standing(*, resident_id: int, standing: str, reason: str, by, overdue_since: date | None) -> Resident:
    with transaction.atomic():
        resident = Resident.objects.select_for_update().get(pk=resident_id)
        changed = resident.account_standing != standing or resident.overdue_since != overdue_since
        resident.account_standing = standing
        resident.overdue_since = overdue_since
        resident.standing_reason = reason[:200]
        resident.standing_changed_at = timezone.now()
        resident.standing_changed_by = by
        resident.save(update_fields=["account_standing", "overdue_since", "standing_reason", "standing_changed_at",
                                     "standing_changed_by", "updated_at"])
        if changed:
            logger.info("resident %s: account standing %s (%s)", resident_id, standing, reason)
            cards_changed()
    return resident


def resident_mark_overdue(*, resident_id: int, overdue_since: date, reason: str, by=None) -> Resident:
    """The account is overdue (billing calls this; ``by`` empty): every card of the resident is Blocked."""
    return _set_standing(resident_id=resident_id, standing=AccountStanding.OVERDUE, reason=reason, by=by,
                         overdue_since=overdue_since)


def resident_suspend_charging(*, resident_id: int, reason: str, by) -> Resident:
    """A manager blocks the resident's charging (``by`` is the manager)."""
    return _set_standing(resident_id=resident_id, standing=AccountStanding.SUSPENDED, reason=reason, by=by,
                         overdue_since=None)


def resident_restore_standing(*, resident_id: int, reason: str = "", by=None) -> Resident:
    """Paid, or unblocked by a manager: the resident's cards work again."""
    return _set_standing(resident_id=resident_id, standing=AccountStanding.GOOD, reason=reason, by=by,
                         overdue_since=None)


def resident_deactivate(*, resident_id: int) -> None:
    """The resident moved out: their cards stop working (history stays)."""
    with transaction.atomic():
        if Resident.objects.filter(pk=resident_id, is_active=True).update(is_active=False,
                                                                           updated_at=timezone.now()):
            cards_changed()


def id_tag_add(*, resident_id: int, id_tag: str, kind: str = IdTag.Kind.RFID, label: str = "",
               parent_id_tag: str = "", expires_at: datetime | None = None) -> IdTag:
    with transaction.atomic():
        tag = IdTag.objects.create(
            id_tag=id_tag.strip().upper(), resident_id=resident_id, kind=kind, label=label,
            parent_id_tag=parent_id_tag.strip().upper(), expires_at=expires_at,
        )
        cards_changed()
    return tag


def id_tag_set_status(*, id_tag: str, status: str, reason: str = "") -> int:
    """Block a card, mark it lost, or make it active again."""
    with transaction.atomic():
        changed = IdTag.objects.filter(id_tag=id_tag.strip().upper()).exclude(status=status).update(
            status=status, status_reason=reason[:200], updated_at=timezone.now())
        if changed:
            cards_changed()
    return changed


def id_tag_set_expiry(*, id_tag: str, expires_at: datetime | None) -> int:
    with transaction.atomic():
        changed = IdTag.objects.filter(id_tag=id_tag.strip().upper()).update(expires_at=expires_at,
                                                                              updated_at=timezone.now())
        if changed:
            cards_changed()
    return changed
