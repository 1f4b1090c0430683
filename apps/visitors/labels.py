"""The printable sheet of visitor labels: one per connector, QR code (segno, inline SVG) and short URL."""

from __future__ import annotations

import re

import segno
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.safestring import mark_safe

from apps.core import pdf
from apps.core.tenants import current_condominium
from apps.visitors import services
from apps.visitors.models import VisitorCode


def qr_svg(url: str) -> str:
    """The URL as a QR code, an inline <svg> element (no XML declaration), 30 mm wide."""
    svg = segno.make(url, error="m").svg_inline(scale=1, border=2, svgclass="qr", lineclass=None)
    # Its viewBox keeps the modules; the printed size is fixed, whatever the URL's length.
    return re.sub(r'width="[^"]*" height="[^"]*"', 'width="30mm" height="30mm"', svg, count=1)


def render_html(chargers: list[str] | None = None) -> str:
    """The sheet of every connector of the building, or of the chargers named (a new cabinet's labels)."""
    condo = current_condominium()
    with translation.override((condo.locale or "en")[:2]):
        labels = []
        for code in services.visitor_codes_ensure(chargers):
            url = services.building_url(condo, reverse("visitor-page", args=[code.code]))
            name, lines = services.visitor_tariff_lines(code.connector)
            labels.append({"code": code, "label": services.connector_label(code.connector), "url": url,
                           "qr": mark_safe(qr_svg(url)),  # noqa: S308 - segno's output of our own URL
                           "tariff": name, "tariff_lines": lines})
        return render_to_string("visitors/labels.html", {"building": condo.name, "labels": labels})


def render_pdf(html: str | None = None, chargers: list[str] | None = None) -> bytes:
    return pdf.html_to_pdf(html or render_html(chargers))


def label_count() -> int:
    return VisitorCode.objects.filter(enabled=True, connector__removed_at__isnull=True).count()
