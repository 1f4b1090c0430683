"""Turning OCPP 1.6 payload parts into plain rows. No database, no I/O."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal

from apps.charging import metering

logger = logging.getLogger(__name__)

DEFAULT_MEASURAND = "Energy.Active.Import.Register"
# MeterValue.value is numeric(20, 6): a larger value would fail the whole write, and the charger would retry
# it for ever. No real meter reads 10^14 of anything.
MAX_ABS_VALUE = Decimal(10) ** 14


def parse_time(raw: str | None) -> datetime | None:
    """An OCPP dateTime as an aware datetime; None when absent or unreadable."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip())
        # In UTC at once: year 1 at +05:00 (or 9999 at -05:00) is not a time any comparison can take.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def meter_value_rows(
    meter_value: list[dict], *, connector_number: int, transaction_id: int | None, received_at: datetime,
) -> list[dict]:
    """Rows for apps.charging.services.meter_values_store from a meterValue / transactionData list.

    Keys are snake_case (the ocpp package converts them). Values that are not
    numbers (SignedData) or out of any meter's range are skipped and logged.
    """
    rows = []
    for entry in meter_value or []:
        sampled_at = parse_time(entry.get("timestamp")) or received_at
        for sample in entry.get("sampled_value") or []:
            value = metering.parse_decimal(sample.get("value", ""))
            if value is None or sample.get("format") == "SignedData" or abs(value) >= MAX_ABS_VALUE:
                logger.info("skipping non-numeric sampled value %r", sample)
                continue
            measurand = sample.get("measurand") or DEFAULT_MEASURAND
            unit = sample.get("unit") or metering.default_unit(measurand)
            rows.append({
                "connector_number": connector_number,
                "transaction_id": transaction_id,
                "measurand": measurand,
                "phase": sample.get("phase") or "",
                "unit": unit,
                "context": sample.get("context") or "Sample.Periodic",
                "location": sample.get("location") or "",
                "value": value,
                "normalized": metering.normalize(value, unit),
                "sampled_at": sampled_at,
                "received_at": received_at,
            })
    return rows


def live_readings(rows: list[dict]) -> dict[str, str]:
    """The latest current per phase, power and energy register of some rows, for the live hash."""
    latest: dict[str, str] = {}
    for row in sorted(rows, key=lambda r: r["sampled_at"]):
        n = row["connector_number"]
        measurand, phase, value = row["measurand"], row["phase"], row["value"]
        if row["location"] not in ("", "Outlet"):
            continue
        if measurand == "Current.Import":
            latest[f"current_a:{n}:{phase.split('-')[0] or 'L1'}"] = str(_scaled(value, row["unit"], "A"))
            # When the platform heard it (the load balancer's clock, not the charger's).
            latest[f"current_at:{n}"] = f"{row['received_at'].timestamp():.3f}"
        elif measurand == "Power.Active.Import" and not phase:
            latest[f"power_w:{n}"] = str(row["normalized"])
        elif measurand == "Energy.Active.Import.Register" and not phase:
            wh = metering.to_wh(value, row["unit"])
            if wh is not None:
                latest[f"register_wh:{n}"] = str(int(wh))
    return latest


def _scaled(value: Decimal, unit: str, base: str) -> Decimal:
    return value / 1000 if unit == f"m{base}" else value
