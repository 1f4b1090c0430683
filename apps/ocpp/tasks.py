"""Periodic OCPP work: the heartbeat watchdog, the frame log's retention, stale sessions.

Each task walks every condominium; a missing row is simply skipped.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from apps.charging import services
from apps.charging.models import ChargePoint
from apps.charging.reservations import reservations_expire
from apps.charging.smart_charging import connectors_over_limit, dispatch_outlook
from apps.core.tenants import all_condominiums, in_condominium
from apps.ocpp import handshake, live
from apps.ocpp.delivery import send_to
from apps.ocpp.models import OcppFrame


def chargers_mark_offline(now: float | None = None) -> list[str]:
    """Mark offline every online charger silent for OCPP_OFFLINE_AFTER_HEARTBEATS x its interval."""
    now = now if now is not None else time.time()
    marked = []
    for condo in all_condominiums():
        with in_condominium(condo):
            online = list(ChargePoint.objects.filter(is_online=True, removed_at__isnull=True).values_list(
                "pk", "charge_point_id", "heartbeat_interval_s", "last_seen_at"))
            if not online:
                continue
            states = live.read_many_sync([cp_id for _, cp_id, _, _ in online])
            for pk, cp_id, interval_s, last_seen_at in online:
                state = states.get(cp_id) or {}
                last = float(state.get("last_seen") or (last_seen_at.timestamp() if last_seen_at else 0))
                interval = int(state.get("heartbeat_interval") or interval_s or settings.OCPP_HEARTBEAT_INTERVAL)
                if now - last <= settings.OCPP_OFFLINE_AFTER_HEARTBEATS * interval:
                    continue
                if services.charger_mark_offline(charge_point_pk=pk,
                                                 last_seen_at=datetime.fromtimestamp(last, tz=UTC) if last else None):
                    marked.append(cp_id)
                    # A socket that stays open but silent: its consumer marks it online at its next message.
                    if state.get("channel"):
                        async_to_sync(send_to)(get_channel_layer(), state["channel"], {"type": "ocpp.offline"})
    return marked


@shared_task
def heartbeat_watchdog() -> int:
    return len(chargers_mark_offline())


@shared_task
def purge_old_frames() -> int:
    """Delete frames older than OCPP_FRAME_RETENTION_DAYS (the only deletion the frame log knows)."""
    cutoff = timezone.now() - timedelta(days=settings.OCPP_FRAME_RETENTION_DAYS)
    deleted = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            deleted += OcppFrame.objects.filter(received_at__lt=cutoff).delete()[0]
    return deleted


@shared_task
def purge_refused_connections() -> int:
    """Delete refused handshakes not seen for OCPP_REFUSED_RETENTION_DAYS."""
    return handshake.purge_refusals(older_than_days=settings.OCPP_REFUSED_RETENTION_DAYS)


@shared_task
def close_stale_sessions() -> int:
    touched = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            touched += len(services.sessions_close_stale(
                stale_after=timedelta(hours=settings.OCPP_STALE_SESSION_HOURS)))
    return touched


@shared_task
def sync_local_lists(schema_name: str, charge_point_pks: list[int] | None = None) -> dict[str, str]:
    """Bring the local authorization lists of a building's connected chargers up to date (apps.ocpp.local_list).

    Queued by apps.charging.local_lists.local_list_request_sync on commit; safe to run twice.
    """
    from apps.ocpp import local_list

    return local_list.sync_building(schema_name, charge_point_pks)


@shared_task
def sync_all_local_lists() -> int:
    """Hourly: cards expire with time; chargers whose list is already right cost one GetLocalListVersion."""
    condominiums = all_condominiums()
    for condo in condominiums:
        sync_local_lists.delay(condo.schema_name, None)
    return len(condominiums)


@shared_task
def expire_reservations() -> int:
    expired = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            expired += reservations_expire()
    return expired


# A queued dispatch starts within milliseconds, or seconds when the worker is busy. If its task is lost (a worker
# killed, a purged queue), its mark holds back every dispatch of the building, decreases included, until the
# mark expires: so not for long. A second dispatch queued meanwhile costs nothing (it finds the first busy).
QUEUED_TTL_S = 10


BUSY_RETRY_S = 5


def queue_dispatch(schema_name: str, countdown: float | None = None) -> None:
    """Queue the building's dispatch unless one is already waiting in the queue (a reconnect storm asks once
    per charger; the dispatch that runs serves them all). The flag is cleared when the task starts, so a
    request that arrives during a dispatch queues the next one; it expires in case the task is lost."""
    if live.mark_once(f"dispatch-queued:{schema_name}", QUEUED_TTL_S):
        dispatch_limits.apply_async((schema_name,), countdown=countdown)


@shared_task
def dispatch_limits(schema_name: str) -> dict:
    """Send the building's charging limits (apps.ocpp.smart_charging). Queued by
    apps.charging.smart_charging on commit of limits_set (and when a charger connects or boots), through
    ``queue_dispatch``; safe to run twice."""
    from apps.ocpp import smart_charging

    live.unmark(f"dispatch-queued:{schema_name}")
    report = smart_charging.dispatch_building(schema_name)
    if report.busy:
        # Another worker holds the building's dispatch and sends this request too before letting go; but if
        # it died holding it, nobody would: come back once more after a moment. Not through queue_dispatch:
        # its "one is waiting" mark would then stand for this delayed retry, and the next plan's request
        # would wait for it (BUSY_RETRY_S) instead of reaching the holder at once.
        dispatch_limits.apply_async((schema_name,), countdown=BUSY_RETRY_S)
    return {"busy": report.busy, "outcomes": {str(pk): status for pk, status in report.outcomes.items()},
            "sent": len(report.sent), "latencies_s": report.latencies_s, "failed": report.failed}


# How far ahead the catch-up (every 30 s, beat) schedules each building's next lease renewal: twice its period, so
# that a catch-up that comes late (or a period a manager lengthened a little) leaves no renewal unscheduled; the
# renewal's own mark keeps a time scheduled by two catch-ups from being dispatched twice.
RENEWAL_AHEAD = timedelta(seconds=60)
RENEWAL_AFTER_S = 0.2  # after the renewal time: the leases that began before it are then due (clocks in ms)


def queue_renewal(schema_name: str, at: datetime) -> bool:
    """Queue the building's dispatch for the moment its leases fall due (``dispatch_outlook``), once per renewal
    time. Not through ``queue_dispatch``: its "one is waiting" mark would hold back the requests of the
    balancer's runs until then. True when queued by this call."""
    ttl_s = int((at - timezone.now()).total_seconds() + RENEWAL_AHEAD.total_seconds()) + 1
    if not live.mark_once(f"dispatch-renewal:{schema_name}:{at.timestamp():.3f}", max(ttl_s, 1)):
        return False
    dispatch_limits.apply_async((schema_name,), eta=at + timedelta(seconds=RENEWAL_AFTER_S))
    return True


@shared_task
def dispatch_all_limits() -> int:
    """Every half minute: limits not yet delivered, leases due, profiles to send again, a request whose task
    was lost. A building with none of them queues nothing (``dispatch_outlook``). And each building's next lease
    renewal within RENEWAL_AHEAD is queued for its time: the leases of a hundred buildings are renewed as each
    falls due, a few at a time, not all those of the last half minute at once."""
    queued = 0
    now = timezone.now()
    for condo in all_condominiums():
        with in_condominium(condo):
            wanted, renewal = dispatch_outlook(within=RENEWAL_AHEAD, now=now)
        if wanted:
            queue_dispatch(condo.schema_name)
            queued += 1
        if renewal is not None:
            queue_renewal(condo.schema_name, renewal)
    return queued


@shared_task
def check_limit_compliance() -> int:
    """Every minute: connectors drawing above their limit are flagged (alert) and their draw counted unmanaged."""
    flagged = 0
    for condo in all_condominiums():
        with in_condominium(condo):
            flagged += len(connectors_over_limit())
    return flagged
