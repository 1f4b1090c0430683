"""The site meter's readings: accept, store, count what is refused, watch for silence, roll up and purge.

Every reading, whichever way it arrives (HTTP push, OCPP MeterValues on the site-meter charger's
connector 0, a Modbus poll), goes through ``apps.electrical.readings`` (parse and check, pure) and
``site_readings_store`` (one transaction, one multi-row INSERT; a replayed timestamp is stored once).
Once committed, the newest reading becomes the building's latest in Redis (``apps.electrical.latest``)
and each new reading is announced to the layers above (``apps.electrical.events``).

Call inside the building's schema unless a function takes ``schema_name``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise, alert_resolve
from apps.core.failures import FailureCounter
from apps.core.tenants import in_schema
from apps.core.yamlfile import Path, Problem
from apps.electrical import events, latest, readings
from apps.electrical.models import SiteMeter, SiteMeterQuarter, SiteMeterReading, SiteMeterRefusal
from apps.electrical.tokens import bearer_token, meter_token_matches

logger = logging.getLogger(__name__)

QUARTER = timedelta(minutes=15)
Reason = SiteMeterRefusal.Reason

# Wrong or missing tokens, per meter id and per address: like charger passwords (apps/core/failures.py).
token_failures = FailureCounter(
    "meter",
    lambda: {"meter": settings.SITE_METER_AUTH_FAILURES_PER_METER,
             "address": settings.SITE_METER_AUTH_FAILURES_PER_ADDRESS},
    label="site-meter token",
)


def limits() -> readings.Limits:
    return readings.Limits(
        future_tolerance=timedelta(seconds=settings.SITE_METER_FUTURE_TOLERANCE_S),
        max_age=timedelta(days=settings.SITE_METER_RAW_RETENTION_DAYS),
        implausible_factor=Decimal(settings.SITE_METER_IMPLAUSIBLE_FACTOR),
    )


def supply_of(meter: SiteMeter) -> readings.Supply:
    """What the meter's readings are checked against: the circuit it measures (the supply, usually)."""
    circuit = meter.circuit
    return readings.Supply(phases=circuit.phases, voltage_v=circuit.voltage_v, max_current_a=circuit.max_current_a)


@dataclass
class Stored:
    """What became of a batch: readings new to the database, those already there, those refused."""

    new: list[readings.Reading] = field(default_factory=list)
    already: int = 0
    refused: tuple[readings.Refusal, ...] = ()

    @property
    def accepted(self) -> int:
        return len(self.new) + self.already


# --- storing -------------------------------------------------------------------------------


def site_readings_store(
    *, meter: SiteMeter, checked: readings.Checked, received_at: datetime, building_schema: str | None = None,
) -> Stored:
    """Store the readings of ``checked`` and count its refusals, in one transaction.

    After commit: the newest reading becomes the building's latest (Redis), the stale alert is resolved
    if the meter was silent and this reading is fresh, and each new reading is announced.
    """
    schema_name = building_schema or connection.schema_name
    result = Stored(refused=checked.refused)
    with transaction.atomic():
        if checked.readings:
            inserted = _insert(meter, checked.readings, received_at)
            result.new = [r for r in checked.readings if r.sampled_at in inserted]
            result.already = len(checked.readings) - len(result.new) + checked.duplicates
        for reason in {r.reason for r in checked.refused}:
            of_reason = [r for r in checked.refused if r.reason == reason]
            last = of_reason[-1]
            count_refusals(meter.key, reason, len(of_reason), f"{last.where()}: {last.message}", now=received_at)
        if result.new:
            newest = result.new[-1]
            transaction.on_commit(lambda: _after_commit(schema_name, meter, result.new, newest, received_at))
    return result


def _insert(meter: SiteMeter, batch: Sequence[readings.Reading], received_at: datetime) -> set[datetime]:
    """One INSERT for the batch; the timestamps that were new (a replay inserts nothing)."""
    table = SiteMeterReading._meta.db_table
    rows: list[Any] = []
    for r in batch:
        currents = [*r.currents_a, None, None][:3]
        powers = [*(r.powers_w or ()), None, None, None][:3]
        rows += [meter.pk, r.sampled_at, received_at, *currents, *powers]
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(batch))
    sql = (
        f"INSERT INTO {table} (meter_id, sampled_at, received_at, current_l1_a, current_l2_a, current_l3_a, "  # noqa: S608
        f"power_l1_w, power_l2_w, power_l3_w) VALUES {placeholders} "
        "ON CONFLICT (meter_id, sampled_at) DO NOTHING RETURNING sampled_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, rows)
        return {row[0] for row in cursor.fetchall()}


def _after_commit(schema_name: str, meter: SiteMeter, new: list[readings.Reading], newest: readings.Reading,
                  received_at: datetime) -> None:
    try:
        replaced, was_stale = latest.put(schema_name, meter.key, newest, received_at=received_at,
                                         stale_after_s=meter.stale_after_s)
        if replaced and was_stale and (timezone.now() - newest.sampled_at).total_seconds() <= meter.stale_after_s:
            with in_schema(schema_name):
                alert_resolve(kind=Alert.Kind.SITE_METER_STALE)
            latest.mark_stale(schema_name, False)
    except Exception:
        # Stored is stored: Redis being away must not fail the push; the stale check catches up.
        logger.exception("site meter %s: could not update the latest reading of %s", meter.key, schema_name)
    for reading in new:
        events.site_reading(schema_name, meter.key, reading)


def count_refusals(meter_key: str, reason: str, count: int, detail: str, *, now: datetime) -> None:
    """Add ``count`` to the meter's counter of ``reason``, in one statement (no row for an unknown meter).

    The same statement runs for an unknown meter id, so that the time it takes does not tell which exist.
    """
    table, meters = SiteMeterRefusal._meta.db_table, SiteMeter._meta.db_table
    sql = (
        f"INSERT INTO {table} (meter_id, reason, count, first_at, last_at, last_detail) "  # noqa: S608
        f"SELECT id, %s, %s, %s, %s, %s FROM {meters} WHERE key = %s AND removed_at IS NULL "
        f"ON CONFLICT (meter_id, reason) DO UPDATE SET count = {table}.count + EXCLUDED.count, "
        "last_at = EXCLUDED.last_at, last_detail = EXCLUDED.last_detail"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [reason, count, now, now, detail[:300], meter_key])


# --- HTTP push -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PushAnswer:
    status: int
    body: dict[str, Any]


UNAUTHORIZED = PushAnswer(401, {"error": "unauthorized"})


def site_meter_push(*, meter_key: str, authorization: str, address: str, body: bytes,
                    now: datetime | None = None) -> PushAnswer:
    """A meter's push to ``POST /api/v1/site-meters/<meter_key>/readings`` on its building's host.

    Answers 202 with what was accepted and refused, 400 with every problem of a malformed body, or 401
    for a wrong or missing token, an unknown meter id (the same answer: no oracle) and, after too many
    failures, for any token until the back-off ends.
    """
    now = now or timezone.now()
    # Counted per building and meter id: guesses on another building's host lock nothing here.
    counted_as = f"{connection.schema_name}:{meter_key}"
    if token_failures.locked_sync(meter=counted_as, address=address):
        count_refusals(meter_key, Reason.BAD_TOKEN, 1, f"refused unchecked (too many failures) from {address}",
                       now=now)
        return UNAUTHORIZED
    meter = (SiteMeter.objects.select_related("circuit")
             .filter(key=meter_key, removed_at__isnull=True, source=SiteMeter.Source.API).first())
    token = bearer_token(authorization)
    # The same hashing whether or not the meter exists.
    matches = meter_token_matches(token or "", meter.token_hash if meter is not None else "")
    if meter is None or token is None or not matches:
        token_failures.record_sync(meter=counted_as, address=address)
        count_refusals(meter_key, Reason.BAD_TOKEN, 1,
                       f"{'missing' if token is None else 'wrong'} token from {address}", now=now)
        return UNAUTHORIZED
    token_failures.clear_sync("meter", counted_as)
    try:
        checked = readings.check_body(body, supply_of(meter), now=now, limits=limits())
    except readings.BodyRefused as refused:
        first = refused.problems[0]
        count_refusals(meter.key, Reason.BAD_BODY, 1, f"{first.where()}: {first.message}", now=now)
        return PushAnswer(400, {"error": "bad request", "problems": [_problem(p) for p in refused.problems]})
    stored = site_readings_store(meter=meter, checked=checked, received_at=now)
    answer: dict[str, Any] = {"accepted": stored.accepted}
    if stored.already:
        answer["already_stored"] = stored.already
    if stored.refused:
        answer["refused"] = [{"where": r.where(), "reason": r.reason, "message": r.message} for r in stored.refused]
    return PushAnswer(202, answer)


def _problem(problem: Problem) -> dict[str, str]:
    return {"where": problem.where(), "message": problem.message, "text": f"{problem.where()}: {problem.message}"}


# --- OCPP and Modbus -------------------------------------------------------------------------


def active_meter(meter_key: str) -> SiteMeter | None:
    return SiteMeter.objects.select_related("circuit").filter(key=meter_key, removed_at__isnull=True).first()


def site_readings_from_values(
    *, meter_key: str, values: Sequence[tuple[Path, datetime, readings.Kind, Sequence[Decimal]]],
    now: datetime | None = None, building_schema: str | None = None,
) -> Stored | None:
    """Readings measured by OCPP or Modbus (already shaped): checked and stored as a push's are."""
    meter = active_meter(meter_key)
    if meter is None:
        return None
    now = now or timezone.now()
    checked = readings.check_values(values, supply_of(meter), now=now, limits=limits())
    return site_readings_store(meter=meter, checked=checked, received_at=now, building_schema=building_schema)


def site_readings_from_ocpp(*, meter_key: str, rows: Sequence[dict[str, Any]], now: datetime | None = None,
                            building_schema: str | None = None) -> Stored | None:
    """The site-meter charger's MeterValues (rows of apps.ocpp.parsing.meter_value_rows) as site readings."""
    meter = active_meter(meter_key)
    if meter is None:
        return None
    now = now or timezone.now()
    samples = [readings.Sample(r["sampled_at"], r["measurand"], r["phase"], r["unit"], r["value"]) for r in rows]
    shaped = readings.from_meter_values(samples, meter.circuit.phases)
    checked = readings.check_values(shaped, supply_of(meter), now=now, limits=limits())
    return site_readings_store(meter=meter, checked=checked, received_at=now, building_schema=building_schema)


# --- staleness -----------------------------------------------------------------------------


def site_meters_check_stale(*, schema_name: str, now: datetime | None = None) -> list[str]:
    """Raise the stale alert for a meter silent longer than its limit, resolve it when readings are back.

    Returns the keys of the meters found stale. When Redis lost the latest reading (a restart), it is put
    back from the database, so the balancer sees it again.
    """
    now = now or timezone.now()
    stale: list[str] = []
    for meter in SiteMeter.objects.filter(removed_at__isnull=True).select_related("circuit"):
        held = latest.site_load_latest(schema_name)
        last_at = held.reading.sampled_at if held is not None and held.meter_key == meter.key else None
        if last_at is None:
            row = SiteMeterReading.objects.filter(meter=meter).order_by("-sampled_at").first()
            if row is not None:
                reading = _reading_of(row)
                latest.put(schema_name, meter.key, reading, received_at=row.received_at,
                           stale_after_s=meter.stale_after_s)
                last_at = reading.sampled_at
        silent_s = (now - (last_at or meter.created_at)).total_seconds()
        if silent_s > meter.stale_after_s:
            stale.append(meter.key)
            since = f"since {last_at.isoformat()}" if last_at else "since it was commissioned (no reading yet)"
            alert_raise(
                kind=Alert.Kind.SITE_METER_STALE, severity=Alert.Severity.CRITICAL,
                message=f"Site meter {meter.key} silent {since}; the load balancer falls back to a safe budget",
                details={"meter": meter.key, "last_reading_at": last_at.isoformat() if last_at else None,
                         "stale_after_s": meter.stale_after_s},
            )
            latest.mark_stale(schema_name, True)
        elif alert_resolve(kind=Alert.Kind.SITE_METER_STALE):
            latest.mark_stale(schema_name, False)
    if not stale and not SiteMeter.objects.filter(removed_at__isnull=True).exists():
        alert_resolve(kind=Alert.Kind.SITE_METER_STALE)  # the meter was retired
    return stale


def _reading_of(row: SiteMeterReading) -> readings.Reading:
    currents = tuple(c for c in (row.current_l1_a, row.current_l2_a, row.current_l3_a) if c is not None)
    powers = tuple(p for p in (row.power_l1_w, row.power_l2_w, row.power_l3_w) if p is not None)
    return readings.Reading(row.sampled_at, currents, powers or None)


# --- retention -----------------------------------------------------------------------------


def quarter_start(moment: datetime) -> datetime:
    return moment - timedelta(minutes=moment.minute % 15, seconds=moment.second, microseconds=moment.microsecond)


@dataclass(frozen=True)
class Housekeeping:
    quarters_written: int
    readings_purged: int


def site_readings_roll_up_and_purge(*, now: datetime | None = None, retention_days: int | None = None) -> Housekeeping:
    """Roll every complete quarter-hour of raw readings up into SiteMeterQuarter, then purge old raw readings.

    Safe to run twice and from any worker: a quarter is recomputed from its raw readings and written only
    when it differs (a second run writes nothing), and raw readings go only by whole quarters that were
    rolled up first, in the same transaction.
    """
    now = now or timezone.now()
    retention = timedelta(days=retention_days or settings.SITE_METER_RAW_RETENTION_DAYS)
    complete_before = quarter_start(now)
    purge_before = quarter_start(now - retention)
    raw, quarters = SiteMeterReading._meta.db_table, SiteMeterQuarter._meta.db_table
    columns = ", ".join(
        f"MAX(current_{p}_a), CEIL(AVG(current_{p}_a) * 10) / 10" for p in ("l1", "l2", "l3")
    )
    upsert = f"""
        INSERT INTO {quarters} (meter_id, period_start, samples, peak_l1_a, mean_l1_a, peak_l2_a, mean_l2_a,
                                peak_l3_a, mean_l3_a)
        SELECT meter_id, to_timestamp(FLOOR(EXTRACT(EPOCH FROM sampled_at) / 900) * 900) AS period, COUNT(*),
               {columns}
        FROM {raw} WHERE sampled_at < %s
        GROUP BY meter_id, period
        ON CONFLICT (meter_id, period_start) DO UPDATE SET
            samples = EXCLUDED.samples, peak_l1_a = EXCLUDED.peak_l1_a, mean_l1_a = EXCLUDED.mean_l1_a,
            peak_l2_a = EXCLUDED.peak_l2_a, mean_l2_a = EXCLUDED.mean_l2_a,
            peak_l3_a = EXCLUDED.peak_l3_a, mean_l3_a = EXCLUDED.mean_l3_a
        WHERE ({quarters}.samples, {quarters}.peak_l1_a, {quarters}.mean_l1_a, {quarters}.peak_l2_a,
               {quarters}.mean_l2_a, {quarters}.peak_l3_a, {quarters}.mean_l3_a)
              IS DISTINCT FROM (EXCLUDED.samples, EXCLUDED.peak_l1_a, EXCLUDED.mean_l1_a, EXCLUDED.peak_l2_a,
               EXCLUDED.mean_l2_a, EXCLUDED.peak_l3_a, EXCLUDED.mean_l3_a)
    """  # noqa: S608
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(upsert, [complete_before])
        written = cursor.rowcount
        purged, _ = SiteMeterReading.objects.filter(sampled_at__lt=purge_before).delete()
    return Housekeeping(quarters_written=max(written, 0), readings_purged=purged)
