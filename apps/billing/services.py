"""Tariffs and session charges: the writes. Call inside the condominium's schema.

- Tariff versions are published once and never change (here, and a database trigger behind it). A new
  price is a new version that takes effect at a date: after every published version of the tariff, and
  not before a session that has already started (its driver accepted the version then in force).
- ``session_price``: a finished session is priced once, with the version in force at its start, and the
  result kept (SessionCharge). Safe to call twice, also at the same time: one charge, never two.
  apps.charging announces every stop (apps.charging.events); apps/billing/apps.py has it priced here once
  the stop has committed.
- ``price_quote``: what a session would cost before plugging in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Max
from django.utils import timezone

from apps.billing import pricing
from apps.billing.models import SessionCharge, Tariff, TariffVersion
from apps.billing.selectors import (
    TariffChoice,
    building_billing,
    pricing_tariff,
    tariff_for,
    version_in_force,
)
from apps.charging import metering
from apps.charging.models import ChargingSession, Connector
from apps.charging.selectors import session_meter_values
from apps.core.tenants import in_schema

logger = logging.getLogger(__name__)


class TariffRefused(Exception):
    """A tariff change was refused; ``problems`` says what and where (paths inside the tariff)."""

    def __init__(self, problems: list[pricing.Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{_where(p.path)}: {p.message}" for p in problems))


def _where(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "tariff"


# --- tariff versions -------------------------------------------------------------------------


def _checked_document(document: Any, currency: str) -> dict[str, Any]:
    try:
        parsed = pricing.parse_tariff(document, currency=currency)
    except pricing.TariffInvalid as invalid:
        raise TariffRefused(invalid.problems) from None
    return pricing.tariff_document(parsed)


def _check_effective_from(tariff: Tariff, effective_from: datetime, now: datetime,
                          exclude_pk: int | None = None) -> None:
    if effective_from.tzinfo is None:
        raise TariffRefused([pricing.Problem(("effective_from",), "must carry its time zone")])
    published = TariffVersion.objects.filter(tariff=tariff, published_at__isnull=False).exclude(pk=exclude_pk)
    latest = published.order_by("-effective_from").values_list("effective_from", flat=True).first()
    if latest is None:
        return  # the first version may start in the past: nothing was priced with this tariff yet
    if effective_from <= latest:
        raise TariffRefused([pricing.Problem(
            ("effective_from",),
            f"must be after {latest.isoformat()}, when version in force took effect; published versions never change",
        )])
    if effective_from < now:
        since = ChargingSession.objects.filter(started_at__gte=effective_from).count()
        if since:
            raise TariffRefused([pricing.Problem(
                ("effective_from",),
                f"{effective_from.isoformat()} is in the past and {since} session(s) started since then, under the "
                "version then in force; a new version takes effect now or later",
            )])


def tariff_publish_version(
    *, tariff: Tariff, effective_from: datetime, document: Any, currency: str, now: datetime | None = None,
) -> TariffVersion:
    """Publish new prices for ``tariff``, in force from ``effective_from``. Raises TariffRefused."""
    now = now or timezone.now()
    stored = _checked_document(document, currency)
    with transaction.atomic():
        Tariff.objects.select_for_update().filter(pk=tariff.pk).first()  # one publisher at a time per tariff
        _check_effective_from(tariff, effective_from, now)
        number = (TariffVersion.objects.filter(tariff=tariff).aggregate(n=Max("number"))["n"] or 0) + 1
        return TariffVersion.objects.create(
            tariff=tariff, number=number, effective_from=effective_from, currency=currency, document=stored,
            published_at=now,
        )


def tariff_version_draft(*, tariff: Tariff, effective_from: datetime, document: Any, currency: str) -> TariffVersion:
    """New prices kept unpublished (a manager preparing a change); publish with ``tariff_version_publish``."""
    stored = _checked_document(document, currency)
    with transaction.atomic():
        Tariff.objects.select_for_update().filter(pk=tariff.pk).first()
        number = (TariffVersion.objects.filter(tariff=tariff).aggregate(n=Max("number"))["n"] or 0) + 1
        return TariffVersion.objects.create(tariff=tariff, number=number, effective_from=effective_from,
                                            currency=currency, document=stored)


def tariff_version_edit(
    *, version: TariffVersion, effective_from: datetime | None = None, document: Any = None,
) -> TariffVersion:
    """Change a draft. A published version is refused: publish a new version instead."""
    with transaction.atomic():
        locked = TariffVersion.objects.select_for_update().get(pk=version.pk)
        if locked.published_at is not None:
            raise TariffRefused([pricing.Problem(
                (), f"{locked.tariff.code} v{locked.number} is published and never changes; publish a new version")])
        if document is not None:
            locked.document = _checked_document(document, locked.currency)
        if effective_from is not None:
            locked.effective_from = effective_from
        locked.save(update_fields=["document", "effective_from"])
        return locked


def tariff_version_publish(*, version: TariffVersion, now: datetime | None = None) -> TariffVersion:
    now = now or timezone.now()
    with transaction.atomic():
        Tariff.objects.select_for_update().filter(pk=version.tariff_id).first()
        locked = TariffVersion.objects.select_for_update().get(pk=version.pk)
        if locked.published_at is not None:
            return locked
        _check_effective_from(locked.tariff, locked.effective_from, now, exclude_pk=locked.pk)
        locked.published_at = now
        locked.save(update_fields=["published_at"])
        return locked


# --- pricing a session ---------------------------------------------------------------------

# What apps.charging.metering notes about a session that it reconstructed well enough to bill (spec: "a
# missing meterStop uses the last reading; a register reset mid-session is reconstructed from the
# readings"). Every other review reason holds the session for a person (an implausible jump ignored, no
# meter data, a StopTransaction attached by guesswork, a charger clock replaced by the server's).
BILLABLE_REVIEW_NOTES = (
    "meterStop missing",
    "meterStop ",  # "meterStop -1 is a placeholder", "meterStop 0 is a placeholder"
    "meterStart ",  # a placeholder, with samples showing the real register
    "meter register reset",
    "energy in kWh labelled as Wh",
)


def _hold_reasons(session: ChargingSession, readings: list[pricing.Reading]) -> tuple[str, ...]:
    reasons = []
    for reason in filter(None, (line.strip() for line in session.review_reason.splitlines())):
        if reason.startswith(BILLABLE_REVIEW_NOTES) and (readings or not reason.startswith("meterStop")):
            continue
        reasons.append(reason)
    if session.needs_review and not session.review_reason.strip():
        reasons.append("flagged for review")
    if session.started_at is None:
        reasons.append("the session's start time is unknown")
    return tuple(reasons)


def connector_max_power_w(connector: Connector | None) -> int:
    """What a connector can deliver at most (the DC charger's rating, or its current at 230 V per phase)."""
    if connector is None:
        return metering.DEFAULT_MAX_POWER_W
    if connector.is_dc and connector.max_power_w:
        return connector.max_power_w
    return metering.connector_max_power_w(connector.max_current_a, connector.phases)


def _charging_complete_at(start: datetime, stop: datetime, readings: list[pricing.Reading],
                          final_wh: int | None) -> datetime | None:
    """When the register reached its final value, if it then stood still until the stop: idle from there."""
    if final_wh is None:
        return None
    complete = None
    for reading in sorted(readings, key=lambda r: r.at):
        still = reading.wh == final_wh and start <= reading.at < stop
        complete = (complete or reading.at) if still else None
    return complete


def session_input(session: ChargingSession) -> pricing.SessionInput:
    """A stored session as the pricing engine reads it: its registers, cleaned by apps.charging.metering."""
    rows = session_meter_values(session_pks=[session.pk], measurands=[metering.REGISTER_MEASURAND])[session.pk]
    readings = []
    for row in rows:
        wh = metering.to_wh(row.value, row.unit) if row.phase == "" and row.location in ("", "Outlet") else None
        if wh is not None and wh >= 0:
            readings.append(pricing.Reading(row.sampled_at, int(wh.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))))
    max_power = connector_max_power_w(session.connector)
    started = session.started_at or session.stopped_at
    assert started is not None and session.stopped_at is not None
    cleaned = metering.reconstruct_energy(
        meter_start=session.meter_start_wh, meter_stop=session.meter_stop_wh, started_at=session.started_at,
        stopped_at=session.stopped_at, readings=[metering.RegisterReading(r.at, Decimal(r.wh)) for r in readings],
        max_power_w=max_power,
    )
    final = cleaned.meter_stop_wh if cleaned.meter_stop_wh is not None else (readings[-1].wh if readings else None)
    return pricing.SessionInput(
        started_at=started, stopped_at=session.stopped_at, meter_start_wh=cleaned.meter_start_wh,
        meter_stop_wh=cleaned.meter_stop_wh, readings=tuple(readings), energy_wh=session.energy_wh,
        energy_source=session.get_energy_source_display() if session.energy_source != "none" else "",
        charging_complete_at=_charging_complete_at(started, session.stopped_at, readings, final),
        unplugged_at=session.stopped_at,  # OCPP 1.6 chargers end the transaction when the cable comes out
        max_power_w=max_power, review_reasons=_hold_reasons(session, readings),
    )


def session_price(*, session_pk: int, now: datetime | None = None) -> SessionCharge | None:
    """Price a finished session once and keep the result; the charge already kept if it was priced before.

    None: no such session, or it is still open. Two calls at the same time make one charge: the second
    insert waits for the first on the unique session column, then finds its row.
    """
    existing = SessionCharge.objects.filter(session_id=session_pk).first()
    if existing is not None:
        return existing
    session = ChargingSession.objects.select_related("connector").filter(pk=session_pk).first()
    if session is None or session.stopped_at is None:
        return None
    building = building_billing()
    data = session_input(session)
    choice = tariff_for(connector_pk=session.connector_id, resident_id=session.resident_id)
    version = version_in_force(choice.tariff, data.started_at) if choice is not None else None
    if version is None:
        why = "no tariff applies" if choice is None else f"tariff {choice.tariff.code} has no version in force"
        result = pricing.PricedSession(
            pricing.HELD, building.currency, (), session.energy_wh, data.energy_source,
            f"{why} at the session's start ({data.started_at.astimezone(building.timezone):%Y-%m-%d %H:%M})",
        )
    else:
        result = pricing.price_session(pricing_tariff(version), data, tz=building.timezone,
                                       prices_include_tax=building.prices_include_tax)
    year, month = pricing.statement_month(session.stopped_at, building.timezone)
    notes = list(result.notes) + ([choice.reason] if choice is not None else [])
    charge = SessionCharge(
        session=session, tariff_version=version, status=result.status, hold_reason=result.hold_reason,
        energy_wh=result.energy_wh, energy_source=result.energy_source[:32], currency=result.currency,
        lines=pricing.lines_document(result), notes=notes, subtotal=result.subtotal, tax=result.tax,
        total=result.total, prices_include_tax=building.prices_include_tax, period=date(year, month, 1),
        priced_at=now or timezone.now(),
    )
    try:
        with transaction.atomic():
            charge.save()
    except IntegrityError:
        return SessionCharge.objects.get(session_id=session_pk)  # priced meanwhile by another caller
    return charge


def sessions_price_pending(*, limit: int = 500) -> int:
    """Price finished sessions that have no charge yet, oldest first; how many were priced.

    The catch-up behind the stop's listener: a stop whose pricing failed (a bug, the database gone at
    that moment) is priced at the next run. Safe to run twice and next to the listener.
    """
    pending = list(ChargingSession.objects.filter(stopped_at__isnull=False, charge__isnull=True)
                   .order_by("stopped_at", "pk").values_list("pk", flat=True)[:limit])
    priced = 0
    for session_pk in pending:
        try:
            session_price(session_pk=session_pk)
            priced += 1
        except Exception:
            logger.exception("session %s could not be priced", session_pk)
    return priced


def session_price_on_commit(session_pk: int) -> None:
    """The stop's listener (apps/billing/apps.py): price the session once its stop has committed.

    robust: a pricing failure is logged and never undoes or fails the stop (the charger gets its answer).
    """
    schema = connection.schema_name
    transaction.on_commit(lambda: _price_in(schema, session_pk), robust=True)


def _price_in(schema: str, session_pk: int) -> None:
    with in_schema(schema):
        session_price(session_pk=session_pk)


# --- quotes --------------------------------------------------------------------------------


class NoTariff(Exception):
    """No tariff applies here (or none is in force at that time)."""


@dataclass(frozen=True)
class Quote:
    tariff_code: str
    tariff_name: str
    version: int
    why: str
    start: datetime
    duration: timedelta
    energy_wh: int
    priced: pricing.PricedSession


def price_quote(
    *, connector: Connector, resident_id: int | None, energy_wh: int, start: datetime | None = None,
    duration: timedelta | None = None, idle: timedelta = timedelta(0), as_resident: bool | None = None,
) -> Quote:
    """What a session of ``energy_wh`` on ``connector`` would cost a resident (or, None, a visitor).

    ``duration`` defaults to the time the connector needs at its full power (at least a minute).
    ``as_resident``: a resident's (True) or a visitor's (False) price without naming a resident.
    """
    building = building_billing()
    start = start or timezone.now()
    max_power = connector_max_power_w(connector)
    if duration is None:
        duration = timedelta(seconds=max(60, -(-energy_wh * 3600 // max_power)))
    choice: TariffChoice | None = tariff_for(connector_pk=connector.pk, resident_id=resident_id,
                                             as_resident=as_resident)
    if choice is None:
        raise NoTariff("no tariff applies on this connector")
    version = version_in_force(choice.tariff, start)
    if version is None:
        raise NoTariff(f"tariff {choice.tariff.code} has no version in force at {start.isoformat()}")
    priced = pricing.quote(pricing_tariff(version), start=start, duration=duration, energy_wh=energy_wh,
                           tz=building.timezone, prices_include_tax=building.prices_include_tax, idle=idle,
                           max_power_w=max_power)
    return Quote(choice.tariff.code, choice.tariff.name, version.number, choice.reason, start, duration, energy_wh,
                 priced)
