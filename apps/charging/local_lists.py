"""Local authorization lists, the database side. Call inside the condominium's schema.

What the chargers' lists should hold (``local_list_entries``), the request to bring them up to date
(``local_list_request_sync``), and the bookkeeping of a sync: one worker holds a charger's list at a
time (``local_list_claim`` / ``local_list_begin`` / ``local_list_release``, a conditional UPDATE with
an expiry) and records what the charger now holds (``local_list_record``). The conversation with the
charger (GetLocalListVersion, SendLocalList) is apps.ocpp.local_list.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise, alert_resolve
from apps.buildings.models import IdTag
from apps.charging.models import ChargePoint
from apps.charging.selectors import id_tag_status

logger = logging.getLogger(__name__)


def local_list_entries(now: datetime | None = None) -> dict[str, dict]:
    """Every idTag of the building as OCPP idTagInfo (camelCase, as SendLocalList carries it), by idTag.

    Blocked and expired tags stay in the list: a charger that also caches authorizations must learn
    that they no longer work. ConcurrentTx is no status for a list: the charger checks it online.
    """
    now = now or timezone.now()
    entries: dict[str, dict] = {}
    for tag in IdTag.objects.select_related("resident").order_by("id_tag"):
        info: dict = {"status": id_tag_status(tag, now)}
        if tag.expires_at:
            info["expiryDate"] = tag.expires_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if tag.parent_id_tag:
            info["parentIdTag"] = tag.parent_id_tag
        entries[tag.id_tag] = info
    return entries


# Queues a sync of the building's (schema name) chargers' lists (their pks, or None: all of them). The layer
# above, apps.ocpp, which talks to the chargers, names it at start-up (apps/ocpp/apps.py): its Celery task.
SyncQueue = Callable[[str, list[int] | None], None]
_sync_queue: SyncQueue | None = None


def local_list_sync_queue(queue: SyncQueue) -> None:
    """Name what queues a sync (apps.ocpp at start-up: its task ``sync_local_lists``)."""
    global _sync_queue
    _sync_queue = queue


def local_list_request_sync(*, charge_point_pks: list[int] | None = None) -> None:
    """Bring the chargers' local lists up to date once the current transaction commits.

    ``None``: every charger of the building (the current schema). The task runs in a Celery worker and
    only touches connected chargers; one that connects later is brought up to date after its boot.
    """
    queue = _sync_queue
    if queue is None:
        logger.warning("local lists: nothing queues a sync (apps.ocpp is not installed)")
        return
    schema = connection.schema_name
    pks = list(charge_point_pks) if charge_point_pks is not None else None
    # robust: a broker that is down must not undo or fail the change itself (the hourly sync catches up).
    transaction.on_commit(lambda: queue(schema, pks), robust=True)


def local_list_supported(configuration: dict) -> bool | None:
    """True/False when the charger's configuration says whether it keeps a local list; None if unknown."""
    profiles = (configuration.get("SupportedFeatureProfiles") or {}).get("value")
    enabled = (configuration.get("LocalAuthListEnabled") or {}).get("value")
    if profiles is not None and "LocalAuthListManagement" not in str(profiles):
        return False
    if enabled is not None:
        return str(enabled).strip().lower() == "true"
    return True if profiles is not None else None


@dataclass(frozen=True)
class LocalListState:
    charge_point_id: str
    version: int
    entries: dict[str, dict]
    configuration: dict


def local_list_claim(*, charge_point_pk: int, hold: timedelta) -> bool:
    """Ask for a sync and try to hold the charger's list for it. False: another worker holds it.

    The holder sees the request (``local_list_dirty``) before it lets go, and syncs again.
    """
    now = timezone.now()
    ChargePoint.objects.filter(pk=charge_point_pk).update(local_list_dirty=True)
    return bool(ChargePoint.objects.filter(pk=charge_point_pk, removed_at__isnull=True).filter(
        Q(local_list_claimed_until__isnull=True) | Q(local_list_claimed_until__lt=now)
    ).update(local_list_claimed_until=now + hold))


def local_list_begin(*, charge_point_pk: int) -> LocalListState | None:
    """Take the pending request and read what the platform knows of the charger's list."""
    ChargePoint.objects.filter(pk=charge_point_pk).update(local_list_dirty=False)
    cp = ChargePoint.objects.filter(pk=charge_point_pk).first()
    if cp is None:
        return None
    return LocalListState(cp.charge_point_id, cp.local_list_version, dict(cp.local_list_entries or {}),
                          dict(cp.configuration or {}))


def local_list_release(*, charge_point_pk: int) -> bool:
    """Let go of the charger's list, unless a sync was asked for meanwhile (then False: sync again)."""
    return bool(ChargePoint.objects.filter(pk=charge_point_pk, local_list_dirty=False).update(
        local_list_claimed_until=None))


def local_list_record(
    *, charge_point_pk: int, status: str, note: str = "", version: int | None = None,
    entries: dict[str, dict] | None = None,
) -> None:
    """Store the outcome of (a step of) a sync: the version and content the charger now holds."""
    fields: dict = {"local_list_status": status, "local_list_note": note[:300], "updated_at": timezone.now()}
    if version is not None and entries is not None:
        fields |= {"local_list_version": version, "local_list_entries": entries,
                   "local_list_hash": local_list_digest(entries)}
    if status == "synced":
        fields["local_list_synced_at"] = timezone.now()
    ChargePoint.objects.filter(pk=charge_point_pk).update(**fields)
    if status in ("synced", "failed"):
        charge_point_id = ChargePoint.objects.filter(pk=charge_point_pk).values_list("charge_point_id",
                                                                                      flat=True).first()
        if charge_point_id is None:
            return
        if status == "failed":
            # Residents may be refused (or a blocked card accepted) while the building is offline.
            alert_raise(kind=Alert.Kind.LOCAL_LIST_FAILED, charge_point_id=charge_point_id,
                        message=f"{charge_point_id}: local authorization list not in sync ({note[:200]})",
                        details={"note": note[:300]})
        else:
            alert_resolve(kind=Alert.Kind.LOCAL_LIST_FAILED, charge_point_id=charge_point_id)


def local_list_digest(entries: dict[str, dict]) -> str:
    return hashlib.sha256(json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
