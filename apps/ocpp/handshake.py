"""Who is knocking: the checks of an OCPP websocket handshake (public schema, then the tenant's).

Sync functions; the consumer runs them through database_sync_to_async.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.hashers import check_password
from django.core.cache import cache
from django.db.models import F
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, schema_context

from apps.tenancy.models import ChargerRegistration, ConnectionAttempt, Domain

logger = logging.getLogger(__name__)

# Rows for unknown chargePointIds written per remote address and window.
MAX_ROWS_PER_ADDRESS = 20


@dataclass(frozen=True)
class Registration:
    charge_point_id: str  # as registered (the URL may differ in case)
    condominium_id: int
    schema_name: str
    password_hash: str


def parse_basic_auth(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    raw = dict(headers).get(b"authorization", b"")
    scheme, _, encoded = raw.partition(b" ")
    if scheme.lower() != b"basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


def find_registration(charge_point_id: str) -> Registration | None:
    with schema_context(get_public_schema_name()):
        reg = (
            ChargerRegistration.objects.select_related("condominium")
            .filter(charge_point_id__iexact=charge_point_id)
            .first()
        )
        if reg is None:
            return None
        return Registration(reg.charge_point_id, reg.condominium_id, reg.condominium.schema_name, reg.password_hash)


def condominium_for_host(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The condominium whose own domain the charger connected through (Host header), if any.

    Lets an unknown charger's attempt show on that building's page: an installer who typed the
    building's address but a wrong id is the usual case.
    """
    raw = dict(headers).get(b"host", b"").decode("latin-1").strip().lower()
    host = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw  # no port; IPv6 literals have many colons
    host = host.rstrip(".")
    if not host:
        return None
    with schema_context(get_public_schema_name()):
        return (Domain.objects.filter(domain__iexact=host).exclude(tenant__schema_name=get_public_schema_name())
                .values_list("tenant_id", flat=True).first())


def password_matches(password: str, password_hash: str) -> bool:
    return check_password(password, password_hash)


def record_refusal(*, charge_point_id: str, remote_address: str, reason: str, condominium_id: int | None) -> None:
    """Keep a refused handshake for the managers to see, at most one row per window and reason."""
    window = settings.OCPP_REFUSED_LOG_WINDOW
    now = timezone.now()
    charge_point_id = charge_point_id[:64]
    with schema_context(get_public_schema_name()):
        first_in_window = cache.add(f"ocpp-refused:{charge_point_id}:{remote_address}:{reason}", 1, timeout=window)
        if not first_in_window:
            latest = (
                ConnectionAttempt.objects.filter(
                    charge_point_id=charge_point_id, remote_address=remote_address, reason=reason
                ).order_by("-last_at").values_list("pk", flat=True).first()
            )
            if latest is not None:
                ConnectionAttempt.objects.filter(pk=latest).update(attempts=F("attempts") + 1, last_at=now)
            return
        if reason == "unknown-charger":
            # Unknown ids: a scan of random ids from one address must not fill the table.
            rows_key = f"ocpp-refused-rows:{remote_address}"
            cache.add(rows_key, 0, timeout=window)
            if cache.incr(rows_key) > MAX_ROWS_PER_ADDRESS:
                return
        ConnectionAttempt.objects.create(
            charge_point_id=charge_point_id, remote_address=remote_address, reason=reason,
            condominium_id=condominium_id, first_at=now, last_at=now,
        )
    logger.warning("refused OCPP connection for %r from %s: %s", charge_point_id, remote_address, reason)
