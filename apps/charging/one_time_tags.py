"""One-time idTags, the database side. Call inside the condominium's schema.

A feature that starts a session for someone without a card (a visitor who paid on the connector's page)
issues a tag for one charger and connector, sends RemoteStartTransaction with it, and finds the session
by the tag afterwards. ``authorize_id_tag`` (apps/charging/selectors.py) accepts it only there, only
until it expires, and only until a StartTransaction used it (``session_start`` marks it used, under the
tag's row lock, so two starts with one tag make one accepted session).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.buildings.models import IdTag
from apps.charging.models import ChargingSession, OneTimeTag

ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def _new_tag(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(15))


def one_time_tag_issue(
    *, charge_point_pk: int, connector_number: int, expires_at: datetime, prefix: str = "V", purpose: str = "visitor",
) -> OneTimeTag:
    """A fresh tag (``prefix`` + 15 random characters, 20 at most as OCPP allows), valid until ``expires_at``."""
    if not 1 <= len(prefix) <= 5 or not prefix.isalnum():
        raise ValueError(f"prefix must be 1 to 5 letters or digits, not {prefix!r}")
    for _ in range(5):
        tag = _new_tag(prefix.upper())
        if IdTag.objects.filter(id_tag=tag).exists():
            continue  # a resident's card with that number: never shadow it
        try:
            with transaction.atomic():
                return OneTimeTag.objects.create(id_tag=tag, charge_point_id=charge_point_pk,
                                                 connector_number=connector_number, expires_at=expires_at,
                                                 purpose=purpose)
        except IntegrityError:
            continue
    raise RuntimeError("could not draw a unique one-time tag")  # pragma: no cover - 34**15 values


def one_time_tag_revoke(*, id_tag: str, at: datetime | None = None) -> bool:
    """Refuse the tag from now on (unless a StartTransaction already used it). True if it was revoked now."""
    return bool(OneTimeTag.objects.filter(id_tag=id_tag, used_at__isnull=True, revoked_at__isnull=True)
                .update(revoked_at=at or timezone.now()))


def one_time_tag_session(id_tag: str) -> ChargingSession | None:
    """The session the tag started (the latest, should a charger have started one offline without asking)."""
    return ChargingSession.objects.filter(id_tag=id_tag).order_by("-pk").first()
