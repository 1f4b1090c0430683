"""Charging limits, the database side: what the load balancer wants on each connector, what was sent and what
each charger holds; the one-worker claim of a building's dispatch; the compliance check. Call inside the
condominium's schema; no I/O beyond the database.

The load balancer (a layer above) calls ``limits_set``; on commit a dispatch is queued by whatever
apps.ocpp named with ``limit_dispatch_queue`` (its Celery task ``dispatch_limits``), which reads the plan
(``dispatch_begin``), talks to the chargers (apps/ocpp/smart_charging.py) and records the outcome here
(``limit_record``, ``chargers_record_profiles``). Each charger's refusals (its quirks, see
apps/ocpp/charging_profiles.py) are kept as JSON on the charger; this module stores them, it does not read
them. A connector that keeps drawing above what it acknowledged is flagged by ``connectors_over_limit``;
``unmanaged_draws`` is what the balancer must then count as load it does not control.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise, alert_resolve, alerts_resolve
from apps.charging import leases
from apps.charging.models import ChargePoint, ChargingSession, Connector, ConnectorLimit, LimitDispatch, MeterValue

logger = logging.getLogger(__name__)

CURRENT_MEASURAND = "Current.Import"
TENTH = Decimal("0.1")


@dataclass(frozen=True)
class Limit:
    """A connector's live limit: amperes per phase (one decimal); after the lease, ``floor_a`` (None: the
    connector's safe default, its TxDefaultProfile)."""

    current_a: Decimal
    floor_a: Decimal | None = None


# Queues a dispatch of the building's (schema name) limits. apps.ocpp names it at start-up: its Celery task.
DispatchQueue = Callable[[str], None]
_dispatch_queue: DispatchQueue | None = None


def limit_dispatch_queue(queue: DispatchQueue) -> None:
    """Name what queues a dispatch (apps.ocpp at start-up: its task ``dispatch_limits``)."""
    global _dispatch_queue
    _dispatch_queue = queue


def limit_request_dispatch() -> None:
    """Dispatch the building's limits once the current transaction commits (robust to a broker that is down:
    the periodic catch-up sends whatever is still wanted)."""
    queue = _dispatch_queue
    if queue is None:
        logger.warning("charging limits: nothing queues a dispatch (apps.ocpp is not installed)")
        return
    schema = connection.schema_name
    # No query here (a reconnect storm calls this for every charger): the task's claim marks the request.
    transaction.on_commit(lambda: queue(schema), robust=True)


def default_reset_after_stop(session_pk: int) -> None:
    """After a session on a charger that refuses TxProfile: its live limit sat in the connector's
    TxDefaultProfile, which outlives the session, so the next car would start at it while the balancer keeps
    only the safe default free. The charger's static profiles are sent again: the idle connector's default
    goes back to the safe one. (Called at every stop, inside the stopping transaction.)"""
    row = ChargingSession.objects.filter(pk=session_pk).values(
        "charge_point_id", "charge_point__smart_charging_quirks").first()
    if row is None or not (row["charge_point__smart_charging_quirks"] or {}).get("tx_profile_rejected"):
        return
    ChargePoint.objects.filter(pk=row["charge_point_id"]).update(smart_charging_resend=True)
    limit_request_dispatch()


def limits_set(*, limits: Mapping[int, Limit], lease_s: int, reason: str, now: datetime | None = None) -> int:
    """Record the limits the balancer wants (connector pk -> Limit) and ask for their dispatch on commit.

    Connectors not named keep what they had. A connector of another building cannot be named: pks are
    looked up in the current building's schema only, and an unknown one is refused (ValueError naming it).
    Returns how many limits changed.
    """
    if lease_s <= 0:
        raise ValueError(f"limits_set: lease_s must be positive, not {lease_s}")
    now = now or timezone.now()
    cleaned: dict[int, Limit] = {}
    for pk, limit in limits.items():
        current = Decimal(limit.current_a)
        if not current.is_finite() or current < 0:
            raise ValueError(f"limits_set: connector {pk}: limit {limit.current_a!r} is not a current >= 0 A")
        floor = None if limit.floor_a is None else Decimal(limit.floor_a)
        if floor is not None and (not floor.is_finite() or floor < 0):
            raise ValueError(f"limits_set: connector {pk}: floor {limit.floor_a!r} is not a current >= 0 A")
        cleaned[int(pk)] = Limit(_tenth(current), None if floor is None else _tenth(floor))
    known = set(Connector.objects.filter(pk__in=list(cleaned), removed_at__isnull=True).values_list("pk", flat=True))
    unknown = sorted(set(cleaned) - known)
    if unknown:
        names = ", ".join(map(str, unknown))
        raise ValueError(f"limits_set: no connector {names} in building {connection.schema_name}")
    changed = 0
    with transaction.atomic():
        # Rows locked in connector order, as limit_record locks them: two writers that lock the same rows in
        # different orders deadlock (seen: a dispatch's record against a balancing run).
        existing = {row.connector_id: row for row in
                    ConnectorLimit.objects.select_for_update().filter(connector_id__in=list(cleaned))
                    .order_by("connector_id")}
        created: list[ConnectorLimit] = []
        kept: list[int] = []  # rows whose limit stays (their lease and reason are renewed)
        moved: dict[tuple[Decimal, Decimal | None], list[int]] = {}  # new (limit, floor) -> rows
        asked_again: list[int] = []  # the same limit, asked again: a new request time
        for pk, limit in cleaned.items():
            row = existing.get(pk)
            if row is None:
                created.append(ConnectorLimit(connector_id=pk, requested_at=now, desired_a=limit.current_a,
                                              floor_a=limit.floor_a, lease_s=lease_s, reason=reason[:300],
                                              dirty=True))
                changed += 1
                continue
            kept.append(row.pk)
            if row.desired_a != limit.current_a or row.floor_a != limit.floor_a:
                # The reaction time counts from here.
                changed += 1
                moved.setdefault((limit.current_a, limit.floor_a), []).append(row.pk)
            elif not row.dirty or row.status == ConnectorLimit.Status.NO_TRANSACTION:
                # The same limit asked again once the last was delivered, or while waiting for a transaction: a
                # new request (it may be for a new transaction); a repeat while the last is still on its way
                # keeps the time of the first.
                asked_again.append(row.pk)
        # A few statements, whatever the number of connectors: a balanced building's connectors mostly share
        # a handful of limits, and a run that changes nothing rewrites only the leases.
        if created:
            ConnectorLimit.objects.bulk_create(created)
        if kept:
            ConnectorLimit.objects.filter(pk__in=kept).update(lease_s=lease_s, reason=reason[:300], dirty=True,
                                                              updated_at=now)
        for (current_a, floor_a), pks in moved.items():
            ConnectorLimit.objects.filter(pk__in=pks).update(desired_a=current_a, floor_a=floor_a, requested_at=now)
        if asked_again:
            ConnectorLimit.objects.filter(pk__in=asked_again).update(requested_at=now)
        limit_request_dispatch()
    return changed


# The fields that make the next dispatch send a charger all its profiles again (and at once).
RESEND_FIELDS: dict[str, object] = {"smart_charging_resend": True, "smart_charging_retry_at": None}


def charger_request_resend(*, charge_point_pk: int) -> None:
    """The charger connected or booted: it may hold none of the platform's profiles. Send them all again."""
    if ChargePoint.objects.filter(pk=charge_point_pk, removed_at__isnull=True).update(**RESEND_FIELDS):
        limit_request_dispatch()


def chargers_request_resend() -> int:
    """Every charger of the building, e.g. after a restart of the platform lost what was in flight."""
    count = ChargePoint.objects.filter(removed_at__isnull=True, enabled=True).update(
        smart_charging_resend=True, smart_charging_retry_at=None)
    if count:
        limit_request_dispatch()
    return count


# --- the dispatch: claim, plan, record ------------------------------------------------


def _held() -> Q:
    """Limits a charger holds under a lease (acknowledged, or found unchanged since)."""
    return Q(lease_until__isnull=False, lease_s__isnull=False,
             status__in=[ConnectorLimit.Status.ACCEPTED, ConnectorLimit.Status.UNCHANGED])


def _held_lease_lengths() -> list[int]:
    return list(ConnectorLimit.objects.filter(_held()).order_by().values_list("lease_s", flat=True).distinct())


def dispatch_wanted(*, now: datetime | None = None, lease_lengths: list[int] | None = None) -> bool:
    """Whether the periodic catch-up has anything to dispatch in the building: a limit not delivered for good
    yet (``dirty``: new, unanswered, waiting for its charger), a request left pending (its task lost), a
    charger whose static profiles are to be sent again, or a lease due (apps/charging/leases.py). Otherwise a
    dispatch would read the whole plan to send nothing; a few small queries instead. ``lease_lengths``: the
    held leases' lengths when the caller read them already."""
    now = now or timezone.now()
    if LimitDispatch.objects.filter(dirty=True).exists() or ChargePoint.objects.filter(
            smart_charging_resend=True, removed_at__isnull=True, enabled=True).exists():
        return True
    wanted = Q(dirty=True)
    for lease_s in _held_lease_lengths() if lease_lengths is None else lease_lengths:
        wanted |= _held() & Q(lease_s=lease_s,
                              lease_until__lt=leases.due_if_ending_before(connection.schema_name, lease_s, now))
    return ConnectorLimit.objects.filter(wanted).exists()


def renewal_next(*, within: timedelta, now: datetime | None = None,
                 lease_lengths: list[int] | None = None) -> datetime | None:
    """The building's next renewal time (apps/charging/leases.py) if it comes within ``within`` and the building
    holds a lease then: the dispatch to run at that moment, so that its leases are renewed when they fall due
    rather than in a burst at the next periodic run. One query, none given ``lease_lengths``."""
    now = now or timezone.now()
    times = [leases.next_renewal(connection.schema_name, lease_s, now)
             for lease_s in (_held_lease_lengths() if lease_lengths is None else lease_lengths)]
    return min((at for at in times if at - now <= within), default=None)


def dispatch_outlook(*, within: timedelta, now: datetime | None = None) -> tuple[bool, datetime | None]:
    """For the periodic catch-up: ``dispatch_wanted`` and ``renewal_next``, the held leases read once."""
    now = now or timezone.now()
    lengths = _held_lease_lengths()
    return (dispatch_wanted(now=now, lease_lengths=lengths),
            renewal_next(within=within, now=now, lease_lengths=lengths))


def dispatch_claim(*, hold: timedelta, now: datetime | None = None) -> bool:
    """Ask for a dispatch and try to hold the building's dispatch. False: another worker holds it and will
    dispatch again before letting go (it sees ``dirty``)."""
    now = now or timezone.now()
    if not LimitDispatch.objects.filter(pk=1).update(dirty=True):
        LimitDispatch.objects.get_or_create(pk=1, defaults={"dirty": True})
    return bool(LimitDispatch.objects.filter(pk=1).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(claimed_until=now + hold, started_at=now))


def dispatch_abandon() -> None:
    """Let go after a failure, the request kept (``dirty``): the next dispatch sends what this one could not."""
    LimitDispatch.objects.filter(pk=1).update(claimed_until=None, dirty=True)


def dispatch_release() -> bool:
    """Let go, unless a dispatch was asked for meanwhile (then False: dispatch again)."""
    return bool(LimitDispatch.objects.filter(pk=1, dirty=False).update(claimed_until=None,
                                                                      finished_at=timezone.now()))


@dataclass(frozen=True)
class ConnectorPlan:
    pk: int
    number: int
    phases: int
    voltage_v: int
    dc: bool
    min_current_a: Decimal
    max_current_a: Decimal | None
    connectors_on_circuit: int
    # the live limit wanted (None: the balancer set none)
    desired_a: Decimal | None
    floor_a: Decimal | None
    lease_s: int | None
    requested_at: datetime | None
    dirty: bool
    # what the charger holds for the open transaction (None: not known, or a new transaction)
    applied_a: Decimal | None
    lease_until: datetime | None
    transaction_id: int | None  # the open transaction, if any
    transaction_received_at: datetime | None  # when the platform received its StartTransaction
    # A limit sent without an answer: until then the charger may still hold the one before (its lease's end)
    unconfirmed_until: datetime | None = None
    # A charger that refuses TxProfile: when a live limit was last acknowledged (in the connector's
    # TxDefaultProfile), and when the safe default was acknowledged there again
    acknowledged_at: datetime | None = None
    default_reset_at: datetime | None = None


@dataclass(frozen=True)
class ChargerPlan:
    pk: int
    charge_point_id: str
    configuration: dict
    quirks: dict
    resend: bool
    retry_at: datetime | None  # it did not answer lately: nothing is sent before then
    # the charger's circuit: per-phase limit (the lowest phase, derated), power limit, voltage and phases
    circuit_current_a: Decimal
    circuit_power_w: int | None
    circuit_voltage_v: int
    circuit_phases: int
    connectors: tuple[ConnectorPlan, ...]
    # when it last accepted its static profiles (ChargePointMaxProfile, TxDefaultProfile per connector)
    static_at: datetime | None = None


def dispatch_begin() -> list[ChargerPlan]:
    """Take the pending request and read what there is to send: every enabled charger with a limit wanted or
    profiles to send again, with its connectors, open transactions and what each holds. A fixed number of
    queries."""
    LimitDispatch.objects.filter(pk=1).update(dirty=False)
    limits = {row.connector_id: row for row in ConnectorLimit.objects.all()}
    limited_chargers = set(Connector.objects.filter(pk__in=list(limits)).values_list("charge_point_id", flat=True))
    chargers = list(ChargePoint.objects.filter(removed_at__isnull=True, enabled=True).filter(
        Q(pk__in=limited_chargers) | Q(smart_charging_resend=True)).select_related("circuit"))
    if not chargers:
        return []
    connectors = list(Connector.objects.filter(charge_point__in=chargers, removed_at__isnull=True)
                      .order_by("charge_point_id", "connector_id"))
    circuit_ids = {cp.circuit_id for cp in chargers}
    on_circuit: dict[int, int] = {}
    for circuit_id in Connector.objects.filter(
            charge_point__circuit_id__in=circuit_ids, charge_point__removed_at__isnull=True,
            removed_at__isnull=True).values_list("charge_point__circuit_id", flat=True):
        on_circuit[circuit_id] = on_circuit.get(circuit_id, 0) + 1
    sessions = {}
    for cp_pk, number, tx, received in ChargingSession.objects.filter(
            charge_point__in=chargers, stopped_at__isnull=True, transaction_id__isnull=False,
    ).order_by("started_at", "pk").values_list("charge_point_id", "connector_number", "transaction_id",
                                               "start_received_at"):
        sessions[(cp_pk, number)] = (tx, received)  # the latest open one per connector wins
    by_charger: dict[int, list[ConnectorPlan]] = {}
    circuits = {cp.pk: cp.circuit for cp in chargers}
    for c in connectors:
        limit = limits.get(c.pk)
        tx, received = sessions.get((c.charge_point_id, c.connector_id), (None, None))
        circuit = circuits[c.charge_point_id]
        # What the charger holds counts only for the transaction it was sent for: TxProfiles end with it.
        held = limit is not None and limit.transaction_id is not None and limit.transaction_id == tx
        by_charger.setdefault(c.charge_point_id, []).append(ConnectorPlan(
            pk=c.pk, number=c.connector_id, phases=c.phases, voltage_v=circuit.voltage_v, dc=c.is_dc,
            min_current_a=c.min_current_a, max_current_a=c.max_current_a,
            connectors_on_circuit=on_circuit.get(circuit.pk, 1),
            desired_a=limit.desired_a if limit else None, floor_a=limit.floor_a if limit else None,
            lease_s=limit.lease_s if limit else None, requested_at=limit.requested_at if limit else None,
            dirty=bool(limit and limit.dirty),
            applied_a=limit.applied_a if held and limit else None,
            lease_until=limit.lease_until if held and limit else None,
            transaction_id=tx, transaction_received_at=received,
            unconfirmed_until=limit.lease_until if limit and limit.status == ConnectorLimit.Status.TIMEOUT else None,
            acknowledged_at=limit.acknowledged_at if limit else None,
            default_reset_at=limit.default_reset_at if limit else None,
        ))
    plans = []
    for cp in chargers:
        circuit = cp.circuit
        plans.append(ChargerPlan(
            pk=cp.pk, charge_point_id=cp.charge_point_id, configuration=dict(cp.configuration or {}),
            quirks=dict(cp.smart_charging_quirks or {}), resend=cp.smart_charging_resend,
            retry_at=cp.smart_charging_retry_at,
            circuit_current_a=min(circuit.max_current_a[: max(circuit.phases, 1)]) * circuit.derate,
            circuit_power_w=circuit.max_power_w, circuit_voltage_v=circuit.voltage_v,
            circuit_phases=circuit.phases, connectors=tuple(by_charger.get(cp.pk, ())),
            static_at=cp.static_profiles_at,
        ))
    return plans


@dataclass(frozen=True)
class LimitOutcome:
    """What became of one connector's live limit in a dispatch."""

    connector_pk: int
    status: str  # a ConnectorLimit.Status value
    note: str = ""
    sent: dict | None = None  # the SetChargingProfile request, when one was sent
    sent_a: Decimal | None = None
    sent_unit: str = ""
    sent_purpose: str = ""
    sent_at: datetime | None = None
    applied_a: Decimal | None = None  # acknowledged
    transaction_id: int | None = None
    lease_until: datetime | None = None


FINAL = {ConnectorLimit.Status.ACCEPTED, ConnectorLimit.Status.UNCHANGED, ConnectorLimit.Status.REJECTED,
         ConnectorLimit.Status.NOT_SUPPORTED}


def limit_record(outcomes: Iterable[LimitOutcome], *, planned_at: datetime, now: datetime | None = None) -> None:
    """Store what each connector was sent and what it answered (``planned_at``: when the plan was read).

    A final outcome (accepted, unchanged, refused for good) ends the wish, unless the balancer asked for
    another limit after the plan was read (``requested_at`` later): that one stays wanted for the next dispatch.
    Two queries whatever the number of connectors: the rows read and locked, then one UPDATE.
    """
    now = now or timezone.now()
    by_connector = {o.connector_pk: o for o in outcomes}
    if not by_connector:
        return
    with transaction.atomic():
        # Every row this touches, locked first in connector order (as limits_set locks them): the UPDATE below
        # then cannot deadlock with a balancing run writing the same rows. Read under the lock, each row's
        # requested_at is the latest: a run that asked meanwhile waits, or has committed and is seen.
        rows = list(ConnectorLimit.objects.select_for_update().filter(connector_id__in=list(by_connector))
                    .order_by("connector_id"))
        fields = _limit_apply(rows, by_connector, planned_at=planned_at, now=now)
        _rows_update(rows, fields)


def _rows_update(rows: list[ConnectorLimit], names: set[str]) -> None:
    """Write these fields of every row in one ``UPDATE ... FROM (VALUES ...)``. Django's bulk_update would too,
    but builds a CASE of one WHEN per row and field in Python: with 50 connectors that took most of a dispatch
    worker's time (docs/benchmarks.md, "Balancing 100 buildings")."""
    if not rows:
        return
    meta = ConnectorLimit._meta
    quote = connection.ops.quote_name
    fields = [meta.get_field(name) for name in sorted(names)]
    one = "(" + ", ".join([f"%s::{meta.pk.rel_db_type(connection)}"]
                          + [f"%s::{field.db_type(connection)}" for field in fields]) + ")"
    params: list[object] = []
    for row in rows:
        params.append(row.pk)
        params += [field.get_db_prep_save(getattr(row, field.attname), connection) for field in fields]
    # Only the model's own names are formatted in; every value is a parameter.
    columns = [quote(field.column) for field in fields]
    pk = quote(meta.pk.column)
    sql = (f"UPDATE {quote(meta.db_table)} AS t SET {', '.join(f'{c} = v.{c}' for c in columns)} "  # noqa: S608
           f"FROM (VALUES {', '.join([one] * len(rows))}) AS v({pk}, {', '.join(columns)}) WHERE t.{pk} = v.{pk}")
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _limit_apply(rows: list[ConnectorLimit], outcomes: Mapping[int, LimitOutcome], *, planned_at: datetime,
                 now: datetime) -> set[str]:
    """Write each outcome onto its row (in memory); the names of the fields any of them changed."""
    fields = {"status", "note", "updated_at", "dirty"}
    for row in rows:
        outcome = outcomes[row.connector_id]
        row.status, row.note, row.updated_at = outcome.status, outcome.note[:300], now
        if outcome.status in FINAL and row.requested_at <= planned_at:
            row.dirty = False
        if outcome.sent is not None:
            row.sent_profile, row.sent_a, row.sent_unit = outcome.sent, outcome.sent_a, outcome.sent_unit
            row.sent_purpose, row.sent_at = outcome.sent_purpose, outcome.sent_at
            fields |= {"sent_profile", "sent_a", "sent_unit", "sent_purpose", "sent_at"}
        if outcome.status == ConnectorLimit.Status.ACCEPTED:
            row.applied_a, row.acknowledged_at = outcome.applied_a, now
            row.transaction_id, row.lease_until = outcome.transaction_id, outcome.lease_until
            fields |= {"applied_a", "acknowledged_at", "transaction_id", "lease_until"}
        elif outcome.status == ConnectorLimit.Status.TIMEOUT and outcome.sent is not None:
            # No answer: it holds this limit or the one before, whose lease (kept) ends its doubt.
            row.applied_a, row.transaction_id = None, None
            fields |= {"applied_a", "transaction_id"}
        elif outcome.sent is not None:
            # Refused: what it holds is not known any more, so the next dispatch sends again.
            row.applied_a, row.transaction_id, row.lease_until = None, None, None
            fields |= {"applied_a", "transaction_id", "lease_until"}
    return fields


@dataclass(frozen=True)
class ChargerRecord:
    """After a dispatch, for one charger: the quirks learnt; its static profiles (ChargePointMax and
    TxDefault): True all accepted, False answered but not all accepted, None not sent or not all answered
    (sent again next time); ``failed``: what no fallback could make it accept (an alert for the managers;
    empty resolves it); ``retry_at``: it did not answer, send nothing more before then (a reconnect clears
    it); ``defaults_reset``: the connectors (numbers) whose TxDefaultProfile went back to the safe default,
    on a charger whose live limits sit there (it refuses TxProfile)."""

    charge_point_pk: int
    charge_point_id: str
    quirks: dict
    static_ok: bool | None
    note: str = ""
    failed: str = ""
    retry_at: datetime | None = None
    defaults_reset: tuple[int, ...] = ()


def chargers_record_profiles(records: Iterable[ChargerRecord]) -> None:
    """Store what a dispatch learnt of its chargers: one UPDATE per set of identical values (most chargers of a
    round end alike), the alerts of those without a failure resolved in one query."""
    now = timezone.now()
    groups: dict[str, tuple[dict, list[int]]] = {}
    settled: list[str] = []
    for record in records:
        if record.defaults_reset:
            ConnectorLimit.objects.filter(connector__charge_point_id=record.charge_point_pk,
                                          connector__connector_id__in=record.defaults_reset
                                          ).update(default_reset_at=now)
        fields: dict = {"smart_charging_quirks": record.quirks, "smart_charging_note": record.note[:300],
                        "updated_at": now, "smart_charging_retry_at": record.retry_at}
        if record.static_ok is not None:
            fields["smart_charging_resend"] = False
        if record.static_ok:
            fields["static_profiles_at"] = now
        key = json.dumps(fields, sort_keys=True, default=str)
        groups.setdefault(key, (fields, []))[1].append(record.charge_point_pk)
        if record.failed:
            alert_raise(kind=Alert.Kind.CHARGING_LIMIT_FAILED, charge_point_id=record.charge_point_id,
                        severity=Alert.Severity.CRITICAL,
                        message=f"{record.charge_point_id}: charging limits not applied ({record.failed})"[:300],
                        details={"failed": record.failed[:300], "quirks": record.quirks})
        else:
            settled.append(record.charge_point_id)
    for fields, pks in groups.values():
        ChargePoint.objects.filter(pk__in=pks).update(**fields)
    alerts_resolve(kind=Alert.Kind.CHARGING_LIMIT_FAILED, charge_point_ids=settled)


# --- what the balancer reads -----------------------------------------------------------


@dataclass(frozen=True)
class LimitState:
    """A connector's live limit as the balancer reads it."""

    connector_pk: int
    desired_a: Decimal
    applied_a: Decimal | None  # what the charger acknowledged holding (None: not known)
    status: str
    lease_until: datetime | None
    flagged: bool  # draws above its limit: count ``measured_a`` as unmanaged load
    measured_a: Decimal | None
    requested_at: datetime
    sent_at: datetime | None

    @property
    def dispatch_latency_s(self) -> float | None:
        """Seconds from the balancer's request to the profile handed to the charger's connection."""
        if self.sent_at is None or self.sent_at < self.requested_at:
            return None
        return (self.sent_at - self.requested_at).total_seconds()


def connector_limits(*, connector_pks: Iterable[int] | None = None) -> dict[int, LimitState]:
    """Every connector's limit (or those named), by connector pk. One query."""
    rows = ConnectorLimit.objects.all()
    if connector_pks is not None:
        rows = rows.filter(connector_id__in=list(connector_pks))
    return {
        row.connector_id: LimitState(row.connector_id, row.desired_a, row.applied_a, row.status, row.lease_until,
                                     row.flagged_at is not None, row.measured_a, row.requested_at, row.sent_at)
        for row in rows
    }


def dispatch_latencies() -> list[float]:
    """Seconds from the balancer's request to the profile handed to the charger's connection, for each
    connector's latest limit that was sent after it was asked for. One query."""
    return sorted((sent_at - requested_at).total_seconds() for requested_at, sent_at in ConnectorLimit.objects.filter(
        sent_at__isnull=False).values_list("requested_at", "sent_at") if sent_at >= requested_at)


# --- compliance ------------------------------------------------------------------------


@dataclass(frozen=True)
class OverLimit:
    connector_pk: int
    charge_point_id: str
    connector_number: int
    limit_a: Decimal
    measured_a: Decimal  # the highest phase current of the latest reading
    over_since: datetime


def connectors_over_limit(*, now: datetime | None = None, tolerance_a: Decimal = Decimal(1),
                          grace: timedelta = timedelta(seconds=60)) -> list[OverLimit]:
    """Connectors whose measured current (MeterValues Current.Import, the highest phase) stayed above what
    they acknowledged + ``tolerance_a`` for ``grace`` or longer: flagged, an alert raised, and their draw
    kept (``unmanaged_draws``). One that complies again is unflagged and its alert resolved.

    Only readings received after the acknowledgment count (the charger and the EV need a moment to follow),
    on the platform's clock. Two queries, whatever the number of connectors.
    """
    now = now or timezone.now()
    limits = list(ConnectorLimit.objects.filter(applied_a__isnull=False, acknowledged_at__isnull=False)
                  .select_related("connector__charge_point"))
    if not limits:
        return []
    oldest = min(row.acknowledged_at for row in limits)
    readings: dict[tuple[int, int], dict[datetime, Decimal]] = {}
    for cp_pk, number, received_at, value, unit in MeterValue.objects.filter(
            measurand=CURRENT_MEASURAND, received_at__gte=oldest, location__in=("", "Outlet"),
            charge_point_id__in={row.connector.charge_point_id for row in limits},
    ).values_list("charge_point_id", "connector_number", "received_at", "value", "unit"):
        amps = value / 1000 if unit == "mA" else value
        per_time = readings.setdefault((cp_pk, number), {})
        # The phases of one MeterValues share its time of receipt: the highest one counts.
        per_time[received_at] = max(per_time.get(received_at, Decimal(0)), amps)
    found = []
    for row in limits:
        connector = row.connector
        series = sorted((at, amps) for at, amps in readings.get((connector.charge_point_id, connector.connector_id),
                                                                {}).items()
                        if at >= row.acknowledged_at)
        over_since = None
        for at, amps in series:
            # The current run of readings above the limit: one reading within it ends the run.
            over_since = (over_since or at) if amps > row.applied_a + tolerance_a else None
        cp_id = connector.charge_point.charge_point_id
        measured = _tenth(series[-1][1]) if series else None
        if over_since is not None and now - over_since >= grace and measured is not None:
            found.append(OverLimit(connector.pk, cp_id, connector.connector_id, row.applied_a, measured, over_since))
            ConnectorLimit.objects.filter(pk=row.pk).update(
                measured_a=measured, over_limit_since=over_since, flagged_at=row.flagged_at or now, updated_at=now)
            alert_raise(kind=Alert.Kind.CHARGER_OVER_LIMIT, charge_point_id=cp_id,
                        connector_number=connector.connector_id,
                        message=f"{cp_id} connector {connector.connector_id} draws {measured} A above its "
                                f"{row.applied_a} A limit since {over_since:%H:%M:%S}",
                        details={"limit_a": str(row.applied_a), "measured_a": str(measured)})
        elif row.flagged_at is not None and (over_since is None):
            ConnectorLimit.objects.filter(pk=row.pk).update(measured_a=measured, over_limit_since=None,
                                                            flagged_at=None, updated_at=now)
            alert_resolve(kind=Alert.Kind.CHARGER_OVER_LIMIT, charge_point_id=cp_id,
                          connector_number=connector.connector_id)
        else:
            ConnectorLimit.objects.filter(pk=row.pk).update(measured_a=measured, over_limit_since=over_since)
    return found


def unmanaged_draws() -> dict[int, Decimal]:
    """Connector pk -> the measured draw (A per phase) of every connector flagged for drawing above its limit:
    load the balancer does not control and must count as such."""
    return dict(ConnectorLimit.objects.filter(flagged_at__isnull=False, measured_a__isnull=False)
                .values_list("connector_id", "measured_a"))


def _tenth(value: Decimal) -> Decimal:
    return value.quantize(TENTH, rounding=ROUND_DOWN)
