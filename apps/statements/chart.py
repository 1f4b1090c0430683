"""The small usage chart on a statement: kWh per day of the month, as SVG. Pure: no Django."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from html import escape

WIDTH, HEIGHT, AXIS = 480, 110, 16


def usage_svg(energy_wh_by_day: Mapping[date, int], days: list[date], caption: str) -> str:
    """Bars of energy per day; ``days`` lists the days of the period in order (empty days show no bar).

    The bars are one path: WeasyPrint draws an SVG node by node, and a <rect> (with a <title> no PDF
    viewer shows) per day made the chart a tenth of a statement's rendering time."""
    if not days:
        return ""
    peak = max([energy_wh_by_day.get(day, 0) for day in days] + [1])
    slot = WIDTH / len(days)
    bar = round(slot * 0.7, 1)
    bars, labels = [], []
    for index, day in enumerate(days):
        wh = energy_wh_by_day.get(day, 0)
        height = round((HEIGHT - AXIS) * wh / peak, 1)
        x = round(index * slot + slot * 0.15, 1)
        if height:
            bars.append(f"M{x} {HEIGHT - AXIS - height}h{bar}v{height}h-{bar}z")
        if day.day in (1, 8, 15, 22, 29):
            labels.append(f'<text x="{x}" y="{HEIGHT - 3}" font-size="9" fill="#555">{day.day}</text>')
    peak_kwh = f"{peak / 1000:.1f} kWh"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(caption)}">'
        f'<line x1="0" y1="{HEIGHT - AXIS}" x2="{WIDTH}" y2="{HEIGHT - AXIS}" stroke="#999" stroke-width="0.5"/>'
        f'<text x="{WIDTH}" y="10" font-size="9" text-anchor="end" fill="#555">{escape(peak_kwh)}</text>'
        + (f'<path fill="#2f6f9f" d="{"".join(bars)}"/>' if bars else "") + "".join(labels) + "</svg>"
    )
