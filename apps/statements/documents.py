"""The statement as a PDF (WeasyPrint), in the resident's language."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.template.loader import render_to_string
from django.utils import translation
from django.utils.safestring import mark_safe
from weasyprint import HTML

from apps.statements import chart, periods
from apps.statements.models import Statement

# WeasyPrint's font subsetting logs every table it touches at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)


def _usage(statement: Statement) -> str:
    timezone = statement.parties.get("building", {}).get("timezone", "UTC")
    per_day: dict = defaultdict(int)
    for line in statement.lines.all():
        if line.energy_wh and line.occurred_at and not line.prior_period:
            per_day[periods.local_day(line.occurred_at, timezone)] += line.energy_wh
    if not per_day:
        return ""
    first = statement.period.month if statement.period else min(per_day).replace(day=1)
    days = [first + timedelta(days=n) for n in range(periods.days_in(first))]
    return chart.usage_svg(per_day, days, translation.gettext("Energy per day"))


def render_html(statement: Statement) -> str:
    with translation.override(statement.language):
        context = {
            "statement": statement,
            "parties": statement.parties,
            "lines": list(statement.lines.all()),
            "usage_chart": mark_safe(_usage(statement)),  # noqa: S308 - built from numbers and escaped text
            "credit_notes": list(statement.credit_notes.order_by("sequence")),
        }
        return render_to_string("statements/statement.html", context)


def render_pdf(statement: Statement) -> bytes:
    return HTML(string=render_html(statement)).write_pdf()
