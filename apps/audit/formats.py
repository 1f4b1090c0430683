"""How values are written in the audit exports, the columns of each file, and the manifest. Pure: no Django.

Times are UTC, ISO 8601 with a ``Z``; energy is integer Wh; amounts are plain decimals (no symbol, no
thousands separator, a ``.``), written with the currency's decimals (USD ``3.95``, JPY ``370``) unless the
stored value has more digits than that, which are then kept: an export never rounds money.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from apps.billing.pricing import minor_unit
from apps.ocpp.masking import mask_id_tag

SESSIONS = (
    "session_id", "charge_point_id", "connector_id", "id_tag", "resident_email", "started_at", "stopped_at",
    "meter_start_wh", "meter_stop_wh", "energy_wh", "tariff_version", "amount", "currency",
    # after the columns every export has:
    "status", "hold_reason", "statement_number", "prior_period", "subtotal", "tax", "transaction_id", "unit",
)
STATEMENTS = (
    "number", "resident_email", "unit", "period", "status", "subtotal", "tax", "total", "currency",
    "kind", "corrects", "issued_on", "due_on", "amount_paid", "amount_credited", "amount_due", "finalized_at",
    "paid_at",
)
PAYMENTS = (
    "record", "id", "payment_id", "resident_email", "kind", "status", "amount", "currency", "refunded",
    "disputed", "stripe_id", "reference", "statement_number", "created_at", "succeeded_at", "reason",
)
OVERDUE = (
    "resident_email", "unit", "statement_number", "period", "due_on", "overdue_since", "days_overdue", "total",
    "amount_paid", "amount_credited", "amount_due", "currency", "reminders_sent", "charging_blocked",
)
OCPP_LOG = ("received_at", "charge_point_id", "direction", "message_type", "action", "unique_id", "raw")

FILES: dict[str, tuple[str, ...]] = {
    "sessions.csv": SESSIONS, "statements.csv": STATEMENTS, "payments.csv": PAYMENTS, "overdue.csv": OVERDUE,
}
MANIFEST = "MANIFEST.sha256"


def utc(instant: datetime | None) -> str:
    """``2026-04-03T19:00:00Z``; empty for no time. A naive time is refused: its zone would be a guess."""
    if instant is None:
        return ""
    if instant.tzinfo is None:
        raise ValueError(f"{instant!r} has no time zone")
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def utc_naive(instant: datetime | None) -> datetime | None:
    """The UTC wall time without a zone, as a spreadsheet cell holds it."""
    return None if instant is None else instant.astimezone(UTC).replace(tzinfo=None)


def day(value: date | None) -> str:
    return "" if value is None else value.isoformat()


def plain(amount: Decimal | None, currency: str) -> str:
    """``Decimal("3.950")`` USD -> ``3.95``; ``Decimal("0.125")`` USD -> ``0.125`` (nothing is rounded away)."""
    if amount is None:
        return ""
    return f"{exact(amount, currency):f}"


def exact(amount: Decimal, currency: str) -> Decimal:
    """The amount with the currency's decimals when that loses nothing, else as stored."""
    try:
        unit = minor_unit(currency.upper())
    except KeyError:
        return amount
    shown = amount.quantize(unit)
    return shown if shown == amount else amount.normalize()


def id_tag(tag: str, *, masked: bool) -> str:
    return mask_id_tag(tag) if masked and tag else tag


def cell(value: object) -> object:
    """Spreadsheets run a cell that starts like a formula: text from outside (a charger, a name) is defused."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def manifest_text(digests: Mapping[str, str]) -> str:
    """``sha256sum`` output: the digest, two spaces (text mode), the relative name; sorted by name."""
    for name in digests:
        if "\n" in name or "\\" in name or name.startswith("/"):
            raise ValueError(f"{name!r} cannot be written in a manifest")
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))


@dataclass(frozen=True)
class Bar:
    label: str
    value: int


def bars_svg(bars: Iterable[Bar], *, caption: str, unit: str, width: int = 640, height: int = 160) -> str:
    """Vertical bars (one per label, in order) as inline SVG; values are integers in ``unit``."""
    items = list(bars)
    if not items:
        return ""
    axis = 16
    peak = max([bar.value for bar in items] + [1])
    slot = width / len(items)
    shapes = []
    for index, bar in enumerate(items):
        bar_height = round((height - axis - 12) * bar.value / peak, 1)
        x = round(index * slot + slot * 0.15, 1)
        shapes.append(
            f'<rect x="{x}" y="{round(height - axis - bar_height, 1)}" width="{round(slot * 0.7, 1)}" '
            f'height="{bar_height}" fill="#2f6f9f"><title>{_esc(bar.label)}: {bar.value} {_esc(unit)}</title></rect>'
        )
        if len(items) <= 12 or index % max(len(items) // 8, 1) == 0:
            shapes.append(f'<text x="{x}" y="{height - 3}" font-size="9" fill="#555">{_esc(bar.label)}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(caption)}">'
        f'<line x1="0" y1="{height - axis}" x2="{width}" y2="{height - axis}" stroke="#999" stroke-width="0.5"/>'
        f'<text x="{width}" y="10" font-size="9" text-anchor="end" fill="#555">max {peak} {_esc(unit)}</text>'
        + "".join(shapes) + "</svg>"
    )


def hbars_svg(bars: Iterable[Bar], *, caption: str, unit: str, width: int = 640) -> str:
    """Horizontal bars with their labels, for a few categories (connectors, tariff windows)."""
    items = list(bars)
    if not items:
        return ""
    row, label_w = 18, 220
    height = row * len(items) + 4
    peak = max([bar.value for bar in items] + [1])
    shapes = []
    for index, bar in enumerate(items):
        y = index * row + 2
        length = round((width - label_w - 90) * bar.value / peak, 1)
        shapes.append(
            f'<text x="0" y="{y + 12}" font-size="10" fill="#333">{_esc(bar.label[:40])}</text>'
            f'<rect x="{label_w}" y="{y + 2}" width="{length}" height="{row - 6}" fill="#2f6f9f"/>'
            f'<text x="{label_w + length + 4}" y="{y + 12}" font-size="10" fill="#333">{bar.value} {_esc(unit)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(caption)}">' + "".join(shapes) + "</svg>"
    )


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
