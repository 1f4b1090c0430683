"""A resident's yearly summary as a PDF (WeasyPrint)."""

from __future__ import annotations

import logging

from django.template.loader import render_to_string
from weasyprint import HTML

from apps.reconciliation.selectors import YearSummary

logging.getLogger("fontTools").setLevel(logging.WARNING)


def year_pdf(summary: YearSummary, condominium) -> bytes:
    html = render_to_string("reconciliation/year_document.html", {"summary": summary, "condominium": condominium})
    return HTML(string=html).write_pdf()
