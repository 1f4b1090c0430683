"""The statement as a PDF (WeasyPrint), in the resident's language."""

from __future__ import annotations

import base64
from collections import defaultdict
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.template.loader import render_to_string
from django.utils import dateformat, formats, translation
from django.utils.timezone import localtime

from apps.core import pdf
from apps.statements import chart, line_text, periods
from apps.statements.models import Statement
from apps.statements.money import display
from apps.statements.templatetags.statements import hours_minutes, kwh

STYLESHEET = "statements/statement.css"


def _usage(statement: Statement, lines: list) -> str:
    """The usage chart as an image's data: URL. WeasyPrint lays out an inline <svg>'s elements as part of
    the page, an image as one box (its bars are one path: see chart.usage_svg)."""
    timezone = statement.parties.get("building", {}).get("timezone", "UTC")
    per_day: dict = defaultdict(int)
    for line in lines:
        if line.energy_wh and line.occurred_at and not line.prior_period:
            per_day[periods.local_day(line.occurred_at, timezone)] += line.energy_wh
    if not per_day:
        return ""
    first = statement.period.month if statement.period else min(per_day).replace(day=1)
    days = [first + timedelta(days=n) for n in range(periods.days_in(first))]
    svg = chart.usage_svg(per_day, days, translation.gettext("Energy per day"))
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def _line_rows(statement: Statement, lines: list) -> tuple[str, list[str]]:
    """The lines table as monospaced text (``line_text``), one text line per statement line where it fits:
    date and time, description, connector, kWh, duration, rate windows, amount. A description, connector
    or rate too long for its column wraps inside it; a line of an earlier period says so under its
    description."""
    gettext = translation.gettext
    # Shares: what the description and connector need is kept whole first; the rate takes what is left.
    columns = [line_text.Column(gettext("Date")), line_text.Column(gettext("Description"), share=10),
               line_text.Column(gettext("Connector"), share=6), line_text.Column(gettext("kWh"), right=True),
               line_text.Column(gettext("Duration"), right=True), line_text.Column(gettext("Rate"), share=6),
               line_text.Column(gettext("Amount"), right=True)]
    zone = ZoneInfo(statement.parties.get("building", {}).get("timezone") or "UTC")
    late = gettext("Earlier period, received late")
    day_format = formats.get_format("SHORT_DATE_FORMAT")  # the language's, as the date filter shows it
    cells = []
    for line in lines:
        when = []
        if line.occurred_at:
            local = localtime(line.occurred_at, zone)
            when = [f"{dateformat.format(local, day_format)} {dateformat.time_format(local, 'H:i')}"]
        amount = line.gross if statement.prices_include_tax else line.amount
        cells.append([when, [line.description] + ([late] if line.prior_period else []),
                      [line.connector_label] if line.connector_label else [], [kwh(line.energy_wh)],
                      [hours_minutes(line.duration_s)], [part for part in line.window.split("; ") if part],
                      [display(amount, statement.currency, statement.language)]])
    return line_text.rows(columns, cells)


def render_html(statement: Statement) -> str:
    lines = list(statement.lines.all())
    with translation.override(statement.language):
        lines_head, line_rows = _line_rows(statement, lines)
        context = {
            "statement": statement,
            "parties": statement.parties,
            "lines_head": lines_head,
            "line_rows": line_rows,
            "usage_chart": _usage(statement, lines),
            "credit_notes": list(statement.credit_notes.order_by("sequence")),
        }
        return render_to_string("statements/statement.html", context)


def render_pdf(statement: Statement) -> bytes:
    return pdf.html_to_pdf(render_html(statement), stylesheets=[STYLESHEET])
