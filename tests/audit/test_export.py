"""The board's audit export of a building-month.

The rule: the export holds exactly the month's sessions (by the month they ended in), its statements and
credit notes, the payments of the month and who is overdue, with UTC times, integer Wh and plain decimals;
its sums agree with the statements; MANIFEST.sha256 passes ``sha256sum -c`` and fails once a file changes;
board members get card ids masked, managers in full, anyone else nothing.
"""

from __future__ import annotations

import csv
import io
import subprocess
import uuid
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from apps.audit import formats, services
from apps.billing import services as billing
from apps.buildings.models import Resident
from apps.charging.models import ChargePoint, ChargingSession
from apps.core.tenants import in_schema
from apps.ocpp.models import OcppFrame
from apps.payments.models import Payment
from apps.statements import periods, settlement
from apps.statements import services as statements
from apps.statements.closing import period_close
from apps.statements.models import Statement, StatementLine
from tests import factories
from tests.payments.cards import VISA, save_card

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("stripe_settings")]

LA = ZoneInfo("America/Los_Angeles")
MONTH = date(2026, 2, 1)  # a past month no other test closes (the tariffs start on 2026-01-01)
HOST = "maple-court.localhost"


def la(*args: int) -> datetime:
    return datetime(*args, tzinfo=LA)


def _resident(condo, tag: str) -> Resident:
    user = factories.resident(condo, f"audit-{uuid.uuid4().hex[:8]}@maple.test", "101", id_tags=(tag,))
    with in_schema(condo.schema_name):
        return Resident.objects.select_related("user", "unit").get(user=user)


def _session(resident: Resident, tag: str, start: datetime, stop: datetime, wh: int, *, review: str = "") -> int:
    charger = ChargePoint.objects.get(charge_point_id="TEST-MAPLE-1")
    session = ChargingSession.objects.create(
        charge_point=charger, connector=charger.connectors.get(connector_id=1), connector_number=1,
        transaction_id=int(uuid.uuid4().int % 2_000_000_000), id_tag=tag, resident=resident, started_at=start,
        start_received_at=start, meter_start_wh=1_000_000, stopped_at=stop, stop_received_at=stop,
        meter_stop_wh=1_000_000 + wh, energy_wh=wh, energy_source=ChargingSession.EnergySource.REGISTER,
        needs_review=bool(review), review_reason=review,
    )
    billing.session_price(session_pk=session.pk)
    return session.pk


class Month:
    """February 2026 at Maple Court: three sessions (one held), closed, Alice's statement paid by autopay."""

    def __init__(self, world, localstripe):
        self.alice_tag = "AA" + uuid.uuid4().hex[:8].upper()
        self.bob_tag = "BB" + uuid.uuid4().hex[:8].upper()
        self.alice, self.bob = _resident(world.maple, self.alice_tag), _resident(world.maple, self.bob_tag)
        with in_schema(world.maple.schema_name):
            self.day = _session(self.alice, self.alice_tag, la(2026, 2, 3, 12), la(2026, 2, 3, 14), 12_345)
            self.bobs = _session(self.bob, self.bob_tag, la(2026, 2, 10, 9), la(2026, 2, 10, 10), 5_000)
            self.held = _session(self.bob, self.bob_tag, la(2026, 2, 11, 9), la(2026, 2, 11, 10), 5_000,
                                 review="meter reset not understood")
            OcppFrame.objects.create(
                charge_point_id="TEST-MAPLE-1", direction="in", message_type=2, action="Authorize", unique_id="u1",
                raw=f'[2,"u1","Authorize",{{"idTag":"{self.alice_tag}"}}]', received_at=la(2026, 2, 3, 11, 59))
            period_close(month=MONTH, now=la(2026, 3, 1, 0, 5))
            self.alice_statement = Statement.objects.get(resident=self.alice, period__month=MONTH)
            self.bob_statement = Statement.objects.get(resident=self.bob, period__month=MONTH)
            save_card(localstripe, self.alice, VISA)
            assert settlement.autopay(self.alice_statement.pk) == "succeeded"
            self.payment = Payment.objects.get(reference=f"statement:{self.alice_statement.pk}")


@pytest.fixture
def month(world, localstripe) -> Month:
    return Month(world, localstripe)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def export(tmp_path: Path, *args: str, period: str = "2026-02", fmt: str = "csv", name: str = "out") -> Path:
    output = tmp_path / name
    call_command("export_audit", "--condominium", "maple-court", "--period", period, "--format", fmt,
                 "--output", str(output), *args, stdout=io.StringIO(), stderr=io.StringIO())
    return output


def test_the_csv_folder_has_the_exact_columns_and_the_months_values(month, tmp_path):
    folder = export(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "MANIFEST.sha256", "README.txt", "overdue.csv", "payments.csv", "sessions.csv", "statements.csv"]
    assert header(folder / "sessions.csv")[:13] == [
        "session_id", "charge_point_id", "connector_id", "id_tag", "resident_email", "started_at", "stopped_at",
        "meter_start_wh", "meter_stop_wh", "energy_wh", "tariff_version", "amount", "currency"]
    assert header(folder / "statements.csv")[:9] == [
        "number", "resident_email", "unit", "period", "status", "subtotal", "tax", "total", "currency"]
    assert header(folder / "payments.csv") == list(formats.PAYMENTS)
    assert header(folder / "overdue.csv") == list(formats.OVERDUE)

    sessions = {int(row["session_id"]): row for row in read_csv(folder / "sessions.csv")}
    day = sessions[month.day]
    assert (day["charge_point_id"], day["connector_id"], day["id_tag"], day["resident_email"]) == (
        "TEST-MAPLE-1", "1", month.alice_tag, month.alice.user.email)
    assert (day["started_at"], day["stopped_at"]) == ("2026-02-03T20:00:00Z", "2026-02-03T22:00:00Z")
    assert (day["meter_start_wh"], day["meter_stop_wh"], day["energy_wh"]) == ("1000000", "1012345", "12345")
    assert (day["amount"], day["currency"], day["status"]) == ("3.95", "USD", "priced")
    assert day["tariff_version"].startswith("residents v") and day["statement_number"] == month.alice_statement.number
    held = sessions[month.held]
    assert (held["status"], held["statement_number"]) == ("held", "")
    assert "meter reset" in held["hold_reason"] and held["amount"] == "" and held["energy_wh"] == "5000"

    statements = {row["number"]: row for row in read_csv(folder / "statements.csv")}
    alice, bob = statements[month.alice_statement.number], statements[month.bob_statement.number]
    assert (alice["period"], alice["status"], alice["total"], alice["amount_paid"], alice["amount_due"]) == (
        "2026-02", "paid", "3.95", "3.95", "0.00")
    assert (bob["status"], bob["subtotal"], bob["tax"], bob["total"], bob["due_on"]) == (
        "open", "1.60", "0.00", "1.60", "2026-03-16")

    # Bob has not paid: on the day of the export (long after 2026-03-16) the board sees him overdue.
    overdue = {row["statement_number"]: row for row in read_csv(folder / "overdue.csv")}
    assert month.alice_statement.number not in overdue
    row = overdue[month.bob_statement.number]
    assert (row["resident_email"], row["due_on"], row["amount_due"]) == (month.bob.user.email, "2026-03-16", "1.60")
    assert int(row["days_overdue"]) > 200

    # The sums agree with the statements: the month's sessions billed = the statements' session lines.
    numbers = set(statements)
    billed = sum(Decimal(r["amount"]) for r in sessions.values() if r["statement_number"] in numbers)
    assert billed == Decimal("5.55")
    assert "month not closed" not in (folder / "README.txt").read_text().lower()


def test_the_statements_session_lines_equal_the_sessions_billed(month, tmp_path, world):
    folder = export(tmp_path)
    sessions = read_csv(folder / "sessions.csv")
    statements = {row["number"] for row in read_csv(folder / "statements.csv")}
    billed = sum((Decimal(r["amount"]) for r in sessions if r["statement_number"] in statements), Decimal(0))
    with in_schema(world.maple.schema_name):
        lines = StatementLine.objects.filter(statement__number__in=statements,
                                             kind__in=[StatementLine.Kind.SESSION, StatementLine.Kind.IDLE])
        assert billed == sum((line.amount + line.tax for line in lines), Decimal(0))
        export_ = services._export(services.AuditRequest(slug="maple-court", first_day=MONTH), world.maple)
        checks = services.reconciliation(services.collect(export_), services.selectors.statement_totals(
            export_.month))
    assert all(check.agrees for check in checks), [(c.name, c.left, c.right) for c in checks if not c.agrees]


def test_the_manifest_passes_sha256sum_and_fails_after_a_file_is_changed(month, tmp_path):
    folder = export(tmp_path, "--include-ocpp-log")
    manifest = (folder / "MANIFEST.sha256").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in manifest) == sorted(
        p.name for p in folder.iterdir() if p.name != "MANIFEST.sha256")
    ok = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with (folder / "statements.csv").open("a") as handle:
        handle.write("S-999999,mallory@x,1,2026-02,paid,0,0,0,USD\n")
    tampered = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=folder, capture_output=True, text=True)
    assert tampered.returncode != 0 and "statements.csv: FAILED" in tampered.stdout


def test_the_ocpp_log_is_added_on_request_and_card_ids_are_masked_when_asked(month, tmp_path):
    full = export(tmp_path, "--include-ocpp-log", name="full")
    log = read_csv(full / "ocpp_log.csv")
    assert any(month.alice_tag in row["raw"] for row in log)
    masked = export(tmp_path, "--include-ocpp-log", "--mask-id-tags", name="masked")
    text = "".join(p.read_text() for p in masked.iterdir())
    assert month.alice_tag not in text and month.bob_tag not in text
    sessions = {int(r["session_id"]): r for r in read_csv(masked / "sessions.csv")}
    assert sessions[month.day]["id_tag"] == "****" + month.alice_tag[-4:]


def test_payments_of_the_month_and_a_month_not_closed(month, tmp_path, world):
    now = timezone.now()
    current = periods.month_of(now, "America/Los_Angeles").strftime("%Y-%m")
    folder = export(tmp_path, period=current)
    payments = {row["stripe_id"]: row for row in read_csv(folder / "payments.csv")}
    row = payments[month.payment.payment_intent_id]
    assert (row["record"], row["kind"], row["status"], row["amount"], row["currency"]) == (
        "payment", "off_session", "succeeded", "3.95", "USD")
    assert (row["statement_number"], row["resident_email"]) == (month.alice_statement.number, month.alice.user.email)
    assert datetime.fromisoformat(row["succeeded_at"]).tzinfo == UTC and row["succeeded_at"].endswith("Z")
    assert "MONTH NOT CLOSED: FIGURES MAY CHANGE" in (folder / "README.txt").read_text()
    pdf = export(tmp_path, period=current, fmt="pdf", name="now.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    with in_schema(world.maple.schema_name):
        open_month = services._export(services.AuditRequest(
            slug="maple-court", first_day=periods.parse_month(current)), world.maple)
        assert "Month not closed: figures may change" in services.render_html(open_month)


def test_the_xlsx_has_a_sheet_per_file_with_typed_cells(month, tmp_path):
    from openpyxl import load_workbook

    path = export(tmp_path, fmt="xlsx", name="audit.xlsx")
    book = load_workbook(path, read_only=True)
    assert book.sheetnames == ["sessions", "statements", "payments", "overdue", "about"]
    rows = list(book["sessions"].iter_rows(values_only=True))
    assert list(rows[0]) == list(formats.SESSIONS)
    day = next(row for row in rows[1:] if row[0] == month.day)
    assert day[5] == datetime(2026, 2, 3, 20, 0) and day[9] == 12_345 and day[11] == pytest.approx(3.95)
    statements = list(book["statements"].iter_rows(values_only=True))
    assert list(statements[0]) == list(formats.STATEMENTS)
    assert {row[0] for row in statements[1:]} >= {month.alice_statement.number, month.bob_statement.number}


def test_the_pdf_report_has_its_totals_charts_and_reconciliation(month, tmp_path, world):
    path = export(tmp_path, fmt="pdf", name="audit.pdf")
    assert path.read_bytes().startswith(b"%PDF")
    with in_schema(world.maple.schema_name):
        export_ = services._export(services.AuditRequest(slug="maple-court", first_day=MONTH), world.maple)
        html = services.render_html(export_)
    assert "Audit report" in html and "2026-02" in html and "<svg" in html
    assert month.bob_statement.number in html  # the overdue list
    assert "DIFFERS" not in html and "agrees" in html
    assert "Month not closed" not in html


def test_a_late_session_and_a_credit_note_land_in_the_months_they_belong_to(month, tmp_path, world):
    with in_schema(world.maple.schema_name):
        late = _session(month.alice, month.alice_tag, la(2026, 2, 27, 12), la(2026, 2, 27, 13), 2_000)  # sent late
        note = statements.credit_note_create(statement_id=month.bob_statement.pk, reason="connector fault",
                                             amount=Decimal("0.60"), now=la(2026, 3, 5, 10))
        period_close(month=date(2026, 3, 1), now=la(2026, 4, 1, 0, 5))
        march = Statement.objects.get(resident=month.alice, period__month=date(2026, 3, 1))
    february = {int(r["session_id"]): r for r in read_csv(export(tmp_path, name="feb") / "sessions.csv")}
    assert (february[late]["statement_number"], february[late]["prior_period"]) == (march.number, "true")
    assert february[month.day]["prior_period"] == "false"

    folder = export(tmp_path, period="2026-03", name="mar")
    rows = {r["number"]: r for r in read_csv(folder / "statements.csv")}
    credit = rows[note.number]
    assert (credit["kind"], credit["corrects"], credit["total"], credit["issued_on"], credit["period"]) == (
        "credit_note", month.bob_statement.number, "-0.60", "2026-03-05", "")
    assert rows[march.number]["period"] == "2026-03"
    overdue = {r["statement_number"]: r for r in read_csv(folder / "overdue.csv")}
    assert (overdue[month.bob_statement.number]["amount_credited"],
            overdue[month.bob_statement.number]["amount_due"]) == ("0.60", "1.00")
    with in_schema(world.maple.schema_name):
        export_ = services._export(services.AuditRequest(slug="maple-court", first_day=date(2026, 3, 1)),
                                   world.maple)
        totals = services.selectors.statement_totals(export_.month)
        checks = services.reconciliation(services.collect(export_), totals)
    assert totals.billed_prior_period_count >= 1 and totals.billed_prior_period_total >= Decimal("0.64")
    assert all(check.agrees for check in checks), [(c.name, c.left, c.right) for c in checks if not c.agrees]


def test_a_difference_between_sessions_and_statement_lines_is_shown(month, world):
    with in_schema(world.maple.schema_name):
        StatementLine.objects.filter(statement=month.bob_statement, session_id=month.bobs).update(
            amount=Decimal("1.61"))
        export_ = services._export(services.AuditRequest(slug="maple-court", first_day=MONTH), world.maple)
        checks = {c.name: c for c in services.reconciliation(
            services.collect(export_), services.selectors.statement_totals(export_.month))}
        html = services.render_html(export_)
    assert not checks["Session lines"].agrees and checks["Session lines"].right - checks["Session lines"].left == (
        Decimal("0.01"))
    assert checks["Sessions billed on this month's statements"].agrees
    assert "DIFFERS" in html


def test_the_export_reads_a_fixed_number_of_queries_however_many_rows(month, world, tmp_path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(name: str) -> int:
        with in_schema(world.maple.schema_name):
            export_ = services._export(services.AuditRequest(slug="maple-court", first_day=MONTH), world.maple)
            folder = tmp_path / name
            folder.mkdir()
            with CaptureQueriesContext(connection) as captured:
                services.write_csv_folder(export_, folder)
            return len(captured)

    before = queries("before")
    assert 0 < before <= 12  # the month, four files, the totals: no query per row
    with in_schema(world.maple.schema_name):
        for day in range(12, 20):
            _session(month.bob, month.bob_tag, la(2026, 2, day, 9), la(2026, 2, day, 10), 1_000)
    assert queries("after") == before
    assert len(read_csv(tmp_path / "after" / "sessions.csv")) == len(read_csv(tmp_path / "before" / "sessions.csv")) + 8


def test_command_errors_are_clear(month, tmp_path):
    with pytest.raises(CommandError, match="no building 'nowhere'"):
        call_command("export_audit", "--condominium", "nowhere", "--period", "2026-02", "--output", str(tmp_path / "x"))
    with pytest.raises(CommandError, match="is not a month"):
        call_command("export_audit", "--condominium", "maple-court", "--period", "2025-13",
                     "--output", str(tmp_path / "x"))
    folder = export(tmp_path)
    with pytest.raises(CommandError, match="is not empty"):
        export(tmp_path)
    export(tmp_path, "--force")
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match=r"notes\.txt"):
        export(tmp_path, "--force")
    with pytest.raises(CommandError, match="has not started"):
        export(tmp_path, period="2099-01", name="future")


def _get(user, path: str, host: str = HOST):
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client.get(path)


def _zip_sessions(response) -> dict[int, dict[str, str]]:
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    [name] = [n for n in archive.namelist() if n.endswith("/sessions.csv")]
    assert name.startswith("audit-maple-court-2026-02/")
    rows = csv.DictReader(io.StringIO(archive.read(name).decode()))
    return {int(row["session_id"]): row for row in rows}


def test_managers_get_card_ids_board_members_masked_and_outsiders_nothing(month, world):
    manager = _zip_sessions(_get(world.acme_manager, "/audit/2026-02.zip"))
    assert manager[month.day]["id_tag"] == month.alice_tag
    board = _get(world.maple_board, "/audit/2026-02.zip")
    assert board.status_code == 200 and board["Content-Type"] == "application/zip"
    assert board["Content-Disposition"].endswith('audit-maple-court-2026-02.zip"')
    assert _zip_sessions(board)[month.day]["id_tag"] == "****" + month.alice_tag[-4:]
    pdf = _get(world.maple_board, "/audit/2026-02?format=pdf")
    assert pdf.status_code == 200 and b"".join(pdf.streaming_content).startswith(b"%PDF")
    xlsx = _get(world.acme_manager, "/audit/2026-02.xlsx")
    assert xlsx.status_code == 200 and xlsx["Content-Type"].startswith("application/vnd.openxmlformats")
    assert _get(world.acme_manager, "/audit/2026-02?format=doc").status_code == 400
    assert _get(world.acme_manager, "/audit/2026-2.zip").status_code == 400

    last = periods.last_closable_month(timezone.now(), "America/Los_Angeles").strftime("%Y-%m")
    home = _get(world.maple_board, "/")
    assert f'href="/audit/{last}.zip"'.encode() in home.content and f"/audit/{last}.pdf".encode() in home.content
    assert b"/audit/" not in _get(world.maple_resident, "/").content

    oak_board = factories.board_member(world.oak, f"board-{uuid.uuid4().hex[:6]}@oak.test")
    for stranger in (world.maple_resident, world.harbor_manager, oak_board):
        response = _get(stranger, "/audit/2026-02.zip")
        assert response.status_code == 404 and month.alice_tag.encode() not in response.content
    anonymous = _get(None, "/audit/2026-02.zip")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    # Oak Tower's board on its own host gets Oak Tower's month, never Maple Court's sessions.
    own = _get(oak_board, "/audit/2026-02.zip", host="oak-tower.localhost")
    assert own.status_code == 200
    assert month.alice_tag.encode() not in b"".join(own.streaming_content)
