"""A resident's yearly summary as a PDF (WeasyPrint, through the platform's one renderer)."""

from __future__ import annotations

from django.template.loader import render_to_string

from apps.core import pdf
from apps.reconciliation.selectors import YearSummary


def year_pdf(summary: YearSummary, condominium) -> bytes:
    html = render_to_string("reconciliation/year_document.html", {"summary": summary, "condominium": condominium})
    return pdf.html_to_pdf(html)
