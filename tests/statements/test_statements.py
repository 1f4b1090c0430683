"""Statements: gapless numbers under concurrency, frozen once final, credit notes, the PDF and the mail.

The rule: a finalized statement's number is the next of its series, with no gap and no repeat, however
many workers finalize at once and whatever rolls back; once final nothing about it changes, and what
was wrong is corrected by a credit note of its own series, never above what is left to credit.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction

from apps.buildings.models import Resident
from apps.core.tenants import in_schema
from apps.statements import services
from apps.statements.models import NumberSeries, Statement, StatementDocument, StatementLine
from apps.statements.services import LineInput, StatementRefused
from tests import factories

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _resident(condo, language: str = "") -> Resident:
    email = f"r-{uuid.uuid4().hex[:8]}@maple.test"
    user = factories.resident(condo, email, "101")
    if language:
        user.preferred_language = language
        user.save(update_fields=["preferred_language"])
    with in_schema(condo.schema_name):
        return Resident.objects.select_related("user", "unit").get(user=user)


def _lines(*amounts: str, tax_rate: str = "0") -> list[LineInput]:
    out = []
    for n, amount in enumerate(amounts):
        value = Decimal(amount)
        tax = (value * Decimal(tax_rate)).quantize(Decimal("0.01"))
        out.append(LineInput(kind=StatementLine.Kind.SESSION, description=f"Session {n}", amount=value, tax=tax,
                             tax_rate=Decimal(tax_rate), energy_wh=12_345,
                             occurred_at=datetime(2026, 11, 3 + n, 20, tzinfo=UTC), duration_s=5400,
                             connector_label="TEST-MAPLE-1 #1", window="Day rate $0.32/kWh"))
    return out


def test_a_draft_totals_its_lines_and_finalizing_numbers_and_freezes_it(world, committed):
    resident = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        draft = services.statement_draft_create(resident=resident, currency="USD",
                                                lines=_lines("3.95", "2.50", tax_rate="0.1"))
        assert (draft.subtotal, draft.tax, draft.total) == (Decimal("6.45"), Decimal("0.65"), Decimal("7.10"))
        assert draft.number == "" and draft.status == Statement.Status.DRAFT
        final = services.statement_finalize(statement_id=draft.pk, now=NOW)
        assert final.number == f"S-{final.sequence:06d}" and final.status == Statement.Status.OPEN
        assert final.parties["resident"]["email"] == resident.user.email
        assert final.parties["building"]["name"] == "Maple Court"
        assert final.issued_on == date(2026, 12, 1)  # 01:00 in Los Angeles
        assert (final.due_on - final.issued_on).days == 15
        again = services.statement_finalize(statement_id=draft.pk, now=NOW)
        assert (again.number, again.finalized_at) == (final.number, final.finalized_at)


def test_numbers_are_gapless_and_unique_when_many_workers_finalize_at_once(world, committed):
    schema = world.maple.schema_name
    resident = _resident(world.maple)
    with in_schema(schema):
        drafts = [services.statement_draft_create(resident=resident, currency="USD", lines=_lines("1.00")).pk
                  for _ in range(24)]
    results: dict[int, str] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker(mine: list[int]) -> None:
        try:
            with in_schema(schema):
                start.wait()
                for pk in mine:
                    results[pk] = services.statement_finalize(statement_id=pk, now=NOW).number
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(drafts[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    with in_schema(schema):
        sequences = sorted(Statement.objects.filter(pk__in=drafts).values_list("sequence", flat=True))
        last = NumberSeries.objects.get(kind=Statement.Kind.STATEMENT).last_number
    assert len(set(results.values())) == 24
    assert sequences == list(range(sequences[0], sequences[0] + 24))
    assert last >= sequences[-1]


def test_a_finalization_that_rolls_back_gives_its_number_back(world, committed):
    resident = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        first = services.statement_draft_create(resident=resident, currency="USD", lines=_lines("1.00"))
        second = services.statement_draft_create(resident=resident, currency="USD", lines=_lines("2.00"))
        before = NumberSeries.objects.get_or_create(kind=Statement.Kind.STATEMENT)[0].last_number

        class Boom(Exception):
            pass

        with pytest.raises(Boom), transaction.atomic():
            services.statement_finalize(statement_id=first.pk, now=NOW)
            raise Boom
        first.refresh_from_db()
        assert first.status == Statement.Status.DRAFT and first.number == ""
        done = services.statement_finalize(statement_id=second.pk, now=NOW)
        assert done.sequence == before + 1  # the number the rolled-back finalization took is reused


def test_a_credit_note_has_its_own_series_and_never_credits_more_than_is_left(world, committed):
    resident = _resident(world.maple)
    with in_schema(world.maple.schema_name):
        statement = services.statement_draft_create(resident=resident, currency="USD",
                                                    lines=_lines("10.00", tax_rate="0.1"))
        statement = services.statement_finalize(statement_id=statement.pk, now=NOW)
        assert statement.total == Decimal("11.00")
        with pytest.raises(StatementRefused, match="needs a reason"):
            services.credit_note_create(statement_id=statement.pk, reason=" ")
        note = services.credit_note_create(statement_id=statement.pk, reason="meter fault on #1",
                                           amount=Decimal("5.50"), now=NOW)
        assert note.number.startswith("CN-") and note.kind == Statement.Kind.CREDIT_NOTE
        assert (note.subtotal, note.tax, note.total) == (Decimal("-5.00"), Decimal("-0.50"), Decimal("-5.50"))
        assert note.status == Statement.Status.ISSUED and note.corrects_id == statement.pk
        with pytest.raises(StatementRefused, match=r"more than the 5\.50"):
            services.credit_note_create(statement_id=statement.pk, reason="again", amount=Decimal("5.51"))
        rest = services.credit_note_create(statement_id=statement.pk, reason="the rest", now=NOW)
        assert rest.total == Decimal("-5.50") and rest.sequence == note.sequence + 1
        statement.refresh_from_db()
        assert statement.status == Statement.Status.VOID  # fully credited and nothing was paid
        with pytest.raises(StatementRefused, match="the credit must be more than zero"):
            services.credit_note_create(statement_id=statement.pk, reason="once more")
        draft = services.statement_draft_create(resident=resident, currency="USD", lines=_lines("1.00"))
        with pytest.raises(StatementRefused, match="only a finalized statement"):
            services.credit_note_create(statement_id=draft.pk, reason="draft")


def test_the_pdf_is_rendered_once_in_the_residents_language_and_kept_with_its_hash(world, committed):
    resident = _resident(world.maple, language="es")
    with in_schema(world.maple.schema_name):
        statement = services.statement_draft_create(resident=resident, currency="USD", lines=_lines("3.95"))
        with pytest.raises(StatementRefused, match="draft"):
            services.statement_render(statement_id=statement.pk)
        statement = services.statement_finalize(statement_id=statement.pk, now=NOW)
        document = services.statement_render(statement_id=statement.pk, now=NOW)
        pdf = bytes(document.pdf)
        assert pdf.startswith(b"%PDF-") and document.sha256 == hashlib.sha256(pdf).hexdigest()
        assert document.language == "es"
        again = services.statement_render(statement_id=statement.pk)
        assert again.pk == document.pk and bytes(again.pdf) == pdf
        assert StatementDocument.objects.filter(statement=statement).count() == 1
    from apps.statements.documents import render_html

    with in_schema(world.maple.schema_name):
        html = render_html(Statement.objects.get(pk=statement.pk))
    assert "Estado de cuenta de carga" in html and statement.number in html and "3,95\xa0US$" in html
    assert 'src="data:image/svg+xml;base64,' in html  # the usage chart


def test_statements_rendered_one_after_another_each_get_their_own_pdf(world, committed):
    """The renderer keeps fonts, stylesheets and font subsets between PDFs: each PDF still shows its own
    number, lines and total (in the page footer too), and its stored hash is of its own bytes."""
    import io

    import pypdf

    from apps.statements.money import display

    amounts = [("3.95",), ("12.40", "7.75"), ("101.10", "0.99", "45.00")]
    with in_schema(world.maple.schema_name):
        statements = []
        for lines in amounts:
            draft = services.statement_draft_create(resident=_resident(world.maple), currency="USD",
                                                    lines=_lines(*lines))
            statements.append(services.statement_finalize(statement_id=draft.pk, now=NOW))
        documents = [services.statement_render(statement_id=statement.pk, now=NOW) for statement in statements]
    numbers = [statement.number for statement in statements]
    assert len(set(numbers)) == 3
    for statement, document, lines in zip(statements, documents, amounts, strict=True):
        pdf = bytes(document.pdf)
        assert document.sha256 == hashlib.sha256(pdf).hexdigest() and document.size_bytes == len(pdf)
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        text = " ".join(" ".join(page.extract_text() for page in reader.pages).split())
        assert f"Number: {statement.number}" in text
        assert f"{statement.number} · 1/{len(reader.pages)}" in text  # the footer
        assert f"Total {display(statement.total, 'USD')}" in text
        assert all(display(Decimal(amount), "USD") in text for amount in lines)
        assert not [number for number in numbers if number != statement.number and number in text]
        assert statement.resident.user.email in text
        fonts = {str(ref.get_object()["/BaseFont"]).split("+")[1]
                 for page in reader.pages for ref in page["/Resources"]["/Font"].values()}
        assert fonts == {"DejaVu-Sans", "DejaVu-Sans-Bold", "DejaVu-Sans-Mono", "DejaVu-Sans-Mono-Bold"}


def test_every_line_of_a_long_statement_is_in_the_pdf_on_one_row_of_aligned_columns(world, committed):
    """The lines are monospaced text (apps/statements/line_text.py): each line's date and time,
    description, connector, kWh, duration, rate and amount on one text line, every column at the same
    position on every row and page; a second rate window, a prior-period note or a connector label too
    long for its column continue on the next text lines, inside their column, all there; a line's text
    stays on one page; the totals are the statement's own."""
    import io
    import re
    from zoneinfo import ZoneInfo

    import pypdf

    from apps.statements.money import display

    long_label = "Visitor spot B-12 (north ramp, level -2) · PARKADE-NORTH-0001 #2"
    lines = []
    for n in range(60):
        amount = Decimal("1000.00") + n if n == 7 else Decimal(n + 1) / 4
        lines.append(LineInput(
            kind=StatementLine.Kind.SESSION, description=f"Charging session {500 + n}", amount=amount,
            energy_wh=1_000 + 37 * n, occurred_at=datetime(2026, 11, 1 + n % 28, 8 + n % 12, 5, tzinfo=UTC),
            duration_s=600 + 60 * n, connector_label=long_label if n == 3 else f"MAPLE-{n % 4} #1",
            window="day 0.32/kWh; night 0.18/kWh" if n % 2 else "day 0.32/kWh", prior_period=n == 5))
    with in_schema(world.maple.schema_name):
        draft = services.statement_draft_create(resident=_resident(world.maple), currency="USD", lines=lines)
        statement = services.statement_finalize(statement_id=draft.pk, now=NOW)
        pdf = bytes(services.statement_render(statement_id=statement.pk, now=NOW).pdf)
    pages = [page.extract_text().split("\n") for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]
    assert len(pages) >= 3
    starts = re.compile(r"\d\d/\d\d/2026 \d\d:\d\d  Charging session (\d+) ")
    rows = {}
    for page_number, page in enumerate(pages):
        for at, text in enumerate(page):
            if found := starts.match(text):
                rows[int(found.group(1)) - 500] = (page_number, at, text)
    assert sorted(rows) == list(range(60)), "every line of the statement, once each"
    assert len({len(text) for _, _, text in rows.values()}) == 1, "every amount ends at the same column"
    day_column = {text.index(" day 0.32/kWh") for _, _, text in rows.values()}
    assert len(day_column) == 1, "the rate column starts at one place on every page"
    for n, (page_number, at, text) in rows.items():
        line = lines[n]
        local = line.occurred_at.astimezone(ZoneInfo(world.maple.timezone))  # the building's time
        kwh = f"{line.energy_wh // 1000}.{line.energy_wh % 1000:03d}"
        assert text.startswith(f"{local:%m/%d/%Y %H:%M}  Charging session {500 + n}  ")
        assert text.endswith(f"  {display(line.amount, 'USD')}")
        assert f" {kwh}  " in text and f" {line.duration_s // 3600}:{line.duration_s % 3600 // 60:02d}  " in text
        if n != 3:
            assert f"  MAPLE-{n % 4} #1  " in text
        if n % 2:  # the second window on the next text line, same page, under the first
            following = pages[page_number][at + 1]
            assert following.index("night 0.18/kWh") == text.index("day 0.32/kWh")
    # The long label: all of it, in the connector column, on the lines of its own row.
    page_number, at, text = rows[3]
    start = text.index("Visitor")
    stop = text.index(f" {lines[3].energy_wh // 1000}.")
    block = [text]
    for following in pages[page_number][at + 1:]:
        if starts.match(following) or not following.strip():
            break
        block.append(following)
    assert len(block) > 2, "the label takes more lines than the row's two rate windows"
    # (pypdf may read a space into a word where a line's glyph positions are adjusted: compared without spaces)
    assert "".join("".join(part[start:stop] for part in block).split()) == "".join(long_label.split())
    assert all(not part[:start].strip() for part in block[1:]), "nothing of it under the other columns"
    page_number, at, text = rows[5]  # the prior-period note, under the description, in its column
    start, stop = text.index("Charging"), text.index("MAPLE-1")
    note = [part[start:stop] for part in pages[page_number][at + 1:at + 4] if not starts.match(part)]
    assert " ".join(" ".join(note).split()).startswith("Earlier period, received late")
    assert f"Total {display(statement.total, 'USD')}" in " ".join(" ".join(text for page in pages for text in page).split())
    assert rows[7][2].endswith("$1,007.00")


def test_the_statement_is_mailed_once_with_its_pdf(world, committed, smtp_inbox):
    resident = _resident(world.maple, language="fr")
    with in_schema(world.maple.schema_name):
        statement = services.statement_draft_create(resident=resident, currency="USD", lines=_lines("3.95"))
        statement = services.statement_finalize(statement_id=statement.pk, now=NOW)
        assert services.statement_email(statement_id=statement.pk, now=NOW) is True
        assert services.statement_email(statement_id=statement.pk, now=NOW) is False
        sha = StatementDocument.objects.get(statement=statement).sha256
    [mail] = smtp_inbox.to(resident.user.email)
    assert mail["Content-Language"] == "fr"
    assert mail["To"] == resident.user.email
    assert statement.number in mail["Subject"] and "Relevé" in mail["Subject"]
    attachments = list(mail.iter_attachments())
    assert [part.get_filename() for part in attachments] == [f"{statement.number}.pdf"]
    assert hashlib.sha256(attachments[0].get_payload(decode=True)).hexdigest() == sha
