"""The board's audit export of one building-month: a CSV folder with its manifest, an XLSX workbook, a PDF.

    audit_export(slug=..., first_day=..., fmt="csv"|"xlsx"|"pdf", output=Path, ...)

CSV is the reference: every other format is made from the same rows (apps/audit/selectors.py), and the
folder's MANIFEST.sha256 lets anyone check, with ``sha256sum -c MANIFEST.sha256`` inside the folder, that no
file was changed since. The rows stream from the database to the files in chunks; only the month's summary
(sums per day, connector and tariff window, a handful of numbers) and the overdue list are held in memory.

Card ids (idTags) are written in full for an operator and masked (apps/ocpp/masking.py) when ``mask_id_tags``:
the web download masks them for board members, as the OCPP frame log does.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import mark_safe

from apps.audit import formats, selectors
from apps.core import pdf
from apps.core.tenants import in_public_schema, in_schema
from apps.ocpp.views import FrameLogQuery
from apps.statements import periods
from apps.tenancy.models import Condominium

FORMATS = ("csv", "xlsx", "pdf")
README = "README.txt"
OCPP_LOG = "ocpp_log.csv"
NOT_CLOSED = "month not closed: figures may change"


class AuditRefused(Exception):
    """The export cannot be made as asked; the message says what and where."""


@dataclass(frozen=True)
class AuditRequest:
    slug: str
    first_day: date
    fmt: str = "csv"
    mask_id_tags: bool = False
    include_ocpp_log: bool = False
    now: datetime | None = None


@dataclass
class Summary:
    """What the report and the README say about the month, gathered while the rows stream past."""

    currency: str
    timezone: str
    sessions: int = 0
    energy_wh: int = 0
    priced: int = 0
    priced_amount: Decimal = Decimal(0)
    held: int = 0
    not_priced: int = 0
    billed_this_month: int = 0
    billed_this_month_amount: Decimal = Decimal(0)
    billed_later: int = 0
    billed_later_amount: Decimal = Decimal(0)
    waiting: int = 0  # priced, not on any statement yet
    waiting_amount: Decimal = Decimal(0)
    per_day_wh: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    per_day_sessions: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    per_connector_wh: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    per_window: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    statements_by_status: dict[str, list] = field(default_factory=dict)
    credit_notes: int = 0
    credit_notes_total: Decimal = Decimal(0)
    payments_succeeded: int = 0
    payments_amount: Decimal = Decimal(0)
    refunds_amount: Decimal = Decimal(0)
    disputes_amount: Decimal = Decimal(0)
    overdue: list[dict] = field(default_factory=list)

    def add_session(self, row: dict, month: selectors.AuditMonth) -> None:
        self.sessions += 1
        self.energy_wh += row["energy_wh"] or 0
        local = periods.local_day(row["stopped_at"], self.timezone)
        self.per_day_wh[local] += row["energy_wh"] or 0
        self.per_day_sessions[local] += 1
        self.per_connector_wh[f"{row['charge_point_id']} #{row['connector_id']}"] += row["energy_wh"] or 0
        amount = row["amount"] or Decimal(0)
        if row["status"] == "priced":
            self.priced += 1
            self.priced_amount += amount
            for line in row["lines"]:
                self.per_window[f"{row['tariff_version']} · {line.get('window', '')}"] += Decimal(line["total"])
            if row["billed_period"] == month.month.first_day:
                self.billed_this_month += 1
                self.billed_this_month_amount += amount
            elif row["statement_number"]:
                self.billed_later += 1
                self.billed_later_amount += amount
            else:
                self.waiting += 1
                self.waiting_amount += amount
        elif row["status"] == "held":
            self.held += 1
        else:
            self.not_priced += 1

    def add_statement(self, row: dict) -> None:
        if row["kind"] == "credit_note":
            self.credit_notes += 1
            self.credit_notes_total += row["total"]
            return
        count, total, due = self.statements_by_status.get(row["status"], (0, Decimal(0), Decimal(0)))
        self.statements_by_status[row["status"]] = [count + 1, total + row["total"], due + row["amount_due"]]

    def add_payment(self, row: dict) -> None:
        if row["record"] == "payment" and row["status"] == "succeeded":
            self.payments_succeeded += 1
            self.payments_amount += row["amount"]
        elif row["record"] == "refund" and row["status"] in ("succeeded", "pending"):
            self.refunds_amount += row["amount"]
        elif row["record"] == "dispute":
            self.disputes_amount += row["amount"]


@dataclass(frozen=True)
class Export:
    """Everything an export is made of, once the building and its month are known (inside its schema)."""

    request: AuditRequest
    condo: Condominium
    month: selectors.AuditMonth
    now: datetime

    @property
    def today(self) -> date:
        return periods.local_day(self.now, self.condo.timezone)

    @property
    def base_name(self) -> str:
        return f"audit-{self.condo.slug}-{self.month.label}"


# --- entry points -------------------------------------------------------------------------------


def building_of(slug: str) -> Condominium:
    with in_public_schema():
        condo = Condominium.objects.filter(slug=slug).first()
    if condo is None:
        raise AuditRefused(f"no building {slug!r}: give the slug of its commissioning file, e.g. maple-court")
    return condo


def audit_export(request: AuditRequest, *, output: Path, force: bool = False) -> tuple[Path, bool]:
    """Write the export to ``output`` (a folder for csv, a file for xlsx and pdf): what was written, and
    whether the month was closed (if not, its figures may change)."""
    if request.fmt not in FORMATS:
        raise AuditRefused(f"format {request.fmt!r}: choose one of {', '.join(FORMATS)}")
    condo = building_of(request.slug)
    _check_output(output, request.fmt, force)
    with in_schema(condo.schema_name):
        export = _export(request, condo)
        if request.fmt == "csv":
            # Written aside and moved in once complete: a failed export leaves no folder without its manifest.
            output.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".audit-", dir=output.parent) as tmp:
                write_csv_folder(export, Path(tmp))
                for path in sorted(Path(tmp).iterdir()):
                    path.replace(output / path.name)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            partial = output.with_name(output.name + ".partial")
            try:
                if request.fmt == "xlsx":
                    write_xlsx(export, partial)
                else:
                    partial.write_bytes(render_pdf(export))
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
    return output, export.month.closed


def audit_download(request: AuditRequest, condo: Condominium) -> tuple[str, str, tempfile.SpooledTemporaryFile]:
    """For the web (already in the building's schema): (file name, content type, file to send).

    csv becomes a zip of the folder (the folder inside it, so that ``sha256sum -c`` runs where it unpacks).
    """
    export = _export(request, condo)
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - handed to the response, which closes it
    if request.fmt == "csv":
        with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
            folder = Path(tmp) / export.base_name
            folder.mkdir()
            write_csv_folder(export, folder)
            with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(folder.iterdir()):
                    archive.write(path, f"{export.base_name}/{path.name}")
        name, content_type = f"{export.base_name}.zip", "application/zip"
    elif request.fmt == "xlsx":
        with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
            path = Path(tmp) / "audit.xlsx"
            write_xlsx(export, path)
            with path.open("rb") as handle:
                shutil.copyfileobj(handle, spool)
        name = f"{export.base_name}.xlsx"
        content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    else:
        spool.write(render_pdf(export))
        name, content_type = f"{export.base_name}.pdf", "application/pdf"
    spool.seek(0)
    return name, content_type, spool


def _export(request: AuditRequest, condo: Condominium) -> Export:
    month = selectors.audit_month(slug=condo.slug, name=condo.name, timezone=condo.timezone,
                                  currency=condo.currency, first_day=request.first_day)
    now = request.now or timezone.now()
    if month.month.starts_at > now:
        raise AuditRefused(f"{condo.slug} {month.label}: the month has not started yet in {condo.timezone}")
    return Export(request, condo, month, now)


def _check_output(output: Path, fmt: str, force: bool) -> None:
    if fmt == "csv":
        if output.exists() and not output.is_dir():
            raise AuditRefused(f"{output} is a file: a CSV export is a folder")
        if output.is_dir() and any(output.iterdir()):
            if not force:
                raise AuditRefused(f"{output} is not empty: choose an empty folder, or --force to replace the export")
            ours = {*formats.FILES, formats.MANIFEST, README, OCPP_LOG}
            others = sorted(p.name for p in output.iterdir() if p.name not in ours)
            if others:
                raise AuditRefused(f"{output} holds files no export writes ({', '.join(others[:5])}): "
                                   "choose another folder, --force only replaces an earlier export")
            for name in ours:
                (output / name).unlink(missing_ok=True)
        return
    if output.is_dir():
        raise AuditRefused(f"{output} is a folder: an {fmt} export is a file")
    if output.exists() and output.stat().st_size > 0 and not force:
        raise AuditRefused(f"{output} exists: choose another name, or --force to replace it")


# --- rows as text and as cells ---------------------------------------------------------------------

MONEY_COLUMNS = {"amount", "subtotal", "tax", "total", "refunded", "disputed", "amount_paid", "amount_credited",
                 "amount_due"}


def _text(column: str, value: object, currency: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return formats.utc(value)
    if isinstance(value, date):
        return formats.day(value)
    if isinstance(value, Decimal):
        return formats.plain(value, currency)
    if isinstance(value, int):
        return str(value)
    return str(formats.cell(str(value)))


def _rows(export: Export, name: str, summary: Summary | None) -> Iterator[dict]:
    month = export.month
    masked = export.request.mask_id_tags
    if name == "sessions.csv":
        for row in selectors.session_rows(month):
            if summary is not None:
                summary.add_session(row, month)
            row["id_tag"] = formats.id_tag(row["id_tag"], masked=masked)
            yield row
    elif name == "statements.csv":
        for row in selectors.statement_rows(month):
            if summary is not None:
                summary.add_statement(row)
            yield row
    elif name == "payments.csv":
        for row in selectors.payment_rows(month):
            if summary is not None:
                summary.add_payment(row)
            yield row
    elif name == "overdue.csv":
        for row in selectors.overdue_rows(today=export.today):
            if summary is not None:
                summary.overdue.append(row)
            yield row


def collect(export: Export) -> Summary:
    """The month's summary without writing anything (for the PDF)."""
    summary = Summary(export.condo.currency, export.condo.timezone)
    for name in formats.FILES:
        for _ in _rows(export, name, summary):
            pass
    return summary


# --- CSV folder -----------------------------------------------------------------------------------


def write_csv_folder(export: Export, folder: Path) -> Summary:
    summary = Summary(export.condo.currency, export.condo.timezone)
    for name, columns in formats.FILES.items():
        with (folder / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(columns)
            for row in _rows(export, name, summary):
                currency = row.get("currency") or export.condo.currency
                writer.writerow([_text(column, row.get(column), currency) for column in columns])
    if export.request.include_ocpp_log:
        write_ocpp_log(export, folder / OCPP_LOG)
    (folder / README).write_text(readme_text(export, summary), encoding="utf-8")
    digests = {path.name: sha256_of(path) for path in sorted(folder.iterdir()) if path.name != formats.MANIFEST}
    (folder / formats.MANIFEST).write_text(formats.manifest_text(digests), encoding="utf-8")
    return summary


def write_ocpp_log(export: Export, path: Path) -> None:
    """The raw OCPP frames of the month, as the frame-log export writes them (masked likewise)."""
    query = FrameLogQuery(schema=export.condo.schema_name, charger="", full_id_tags=not export.request.mask_id_tags,
                          start=export.month.month.starts_at, end=export.month.month.ends_at)
    with path.open("w", encoding="utf-8", newline="") as handle:
        for chunk in query.iter_csv():
            handle.write(chunk)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def readme_text(export: Export, summary: Summary) -> str:
    context = {"export": export, "summary": summary, "month": export.month, "not_closed": NOT_CLOSED,
               "generated_at": formats.utc(export.now), "files": formats.FILES,
               "ocpp_log": export.request.include_ocpp_log, **_bounds(export)}
    return render_to_string("audit/README.txt", context)


# --- XLSX -----------------------------------------------------------------------------------------


def write_xlsx(export: Export, path: Path) -> Summary:
    """One workbook, a sheet per CSV file, the same columns; times as UTC date-times, amounts as numbers."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    summary = Summary(export.condo.currency, export.condo.timezone)
    book = Workbook(write_only=True)
    for name, columns in formats.FILES.items():
        sheet = book.create_sheet(name.removesuffix(".csv"))
        sheet.append(list(columns))
        for row in _rows(export, name, summary):
            currency = row.get("currency") or export.condo.currency
            cells = []
            for column in columns:
                value = row.get(column)
                cell = WriteOnlyCell(sheet, value=_cell_value(value, currency))
                if isinstance(value, datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                elif isinstance(value, date):
                    cell.number_format = "yyyy-mm-dd"
                elif isinstance(value, Decimal):
                    cell.number_format = _number_format(currency)
                cells.append(cell)
            sheet.append(cells)
    about = book.create_sheet("about")
    for line in readme_text(export, summary).splitlines():
        about.append([line])
    book.save(path)
    return summary


def _cell_value(value: object, currency: str) -> object:
    if isinstance(value, datetime):
        return formats.utc_naive(value)
    if isinstance(value, Decimal):
        # openpyxl writes the Decimal's own digits into the file; a spreadsheet reads them as a double.
        return formats.exact(value, currency)
    if isinstance(value, str):
        return formats.cell(value)
    return value


def _number_format(currency: str) -> str:
    digits = -formats.exact(Decimal(1), currency).as_tuple().exponent  # type: ignore[operator]
    return "0" if digits <= 0 else "0." + "0" * digits


# --- PDF ------------------------------------------------------------------------------------------


def render_html(export: Export, summary: Summary | None = None) -> str:
    summary = summary or collect(export)
    totals = selectors.statement_totals(export.month)
    currency = export.condo.currency
    first = export.month.month.first_day
    days = [first + timedelta(days=n) for n in range(periods.days_in(first))]
    charts = {
        "per_day": formats.bars_svg(
            [formats.Bar(str(d.day), summary.per_day_sessions.get(d, 0)) for d in days],
            caption="Sessions per day", unit="sessions"),
        "energy_per_day": formats.bars_svg(
            [formats.Bar(str(d.day), round(summary.per_day_wh.get(d, 0) / 1000)) for d in days],
            caption="Energy per day", unit="kWh"),
        "per_connector": formats.hbars_svg(
            [formats.Bar(label, round(wh / 1000)) for label, wh in sorted(summary.per_connector_wh.items())],
            caption="Energy per connector", unit="kWh"),
    }
    checks = reconciliation(summary, totals)
    context = {
        "export": export, "month": export.month, "summary": summary, "totals": totals, "currency": currency,
        "not_closed": NOT_CLOSED, "generated_at": formats.utc(export.now),
        "charts": {key: mark_safe(svg) for key, svg in charts.items()},  # noqa: S308 - numbers and escaped labels
        "windows": sorted(summary.per_window.items(), key=lambda item: -item[1]),
        "statuses": sorted(summary.statements_by_status.items()),
        "checks": checks, "all_agree": all(check.agrees for check in checks),
        "energy_kwh": Decimal(summary.energy_wh) / 1000,
        "connector_rows": sorted(summary.per_connector_wh.items()),
        **_bounds(export),
    }
    return render_to_string("audit/report.html", context)


def _bounds(export: Export) -> dict[str, str]:
    return {"starts_at": formats.utc(export.month.month.starts_at), "ends_at": formats.utc(export.month.month.ends_at)}


def render_pdf(export: Export) -> bytes:
    return pdf.html_to_pdf(render_html(export))


@dataclass(frozen=True)
class Check:
    name: str
    left_label: str
    left: Decimal
    right_label: str
    right: Decimal

    @property
    def agrees(self) -> bool:
        return self.left == self.right


def reconciliation(summary: Summary, totals: selectors.StatementTotals) -> list[Check]:
    """Sums that must agree; a difference is shown, never hidden."""
    return [
        Check("Sessions billed on this month's statements",
              "this month's sessions billed + earlier months' sessions billed now",
              summary.billed_this_month_amount + totals.billed_prior_period_total,
              "priced sessions on these statements", totals.billed_charges_total),
        Check("Session lines", "priced sessions on these statements", totals.billed_charges_total,
              "session and idle lines of the statements (amount + tax)", totals.session_lines_gross),
        Check("Statement lines", "all lines (amount + tax)", totals.session_lines_gross + totals.other_lines_gross,
              "statement totals", totals.total),
        Check("Statement totals", "subtotal + tax", totals.subtotal + totals.tax, "total", totals.total),
        Check("Payments applied", "payments applied to these statements", totals.allocated,
              "amount paid on these statements", totals.amount_paid),
    ]
