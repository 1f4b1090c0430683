"""Inline SVG charts of the capacity report, for the managers' page (no JavaScript, no image files).

Pure: no Django, no I/O. Coordinates are computed in Decimal and written with one decimal; every text in
the SVG is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, Decimal
from html import escape

from apps.electrical.capacity import TENTH, CapacityReport

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 44, 16, 16, 36
PHASE_COLOURS = ("#b5462f", "#2f6db5", "#3a8f3a")


def _n(value: Decimal | int) -> str:
    return str(Decimal(value).quantize(TENTH))


def _nice(value: Decimal, step: int) -> Decimal:
    """``value`` rounded up to a multiple of ``step`` (at least one step): round figures on the axis."""
    return Decimal(max(1, -(-int(value.to_integral_value(rounding=ROUND_CEILING)) // step)) * step)


def _frame(title: str, body: Sequence[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'class="capacity-chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
            + "".join(body) + "</svg>")


def _axes(y_max: Decimal, y_label: str, ticks: int = 5) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" stroke="#555"/>',
             f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#555"/>']
    for n in range(ticks + 1):
        value = y_max * n / ticks
        y = Decimal(HEIGHT - BOTTOM) - Decimal(plot_h) * n / ticks
        parts.append(f'<text x="{LEFT - 4}" y="{_n(y + 4)}" font-size="10" text-anchor="end">'
                     f"{escape(str(value.quantize(Decimal(1))))}</text>")
        parts.append(f'<line x1="{LEFT}" y1="{_n(y)}" x2="{WIDTH - RIGHT}" y2="{_n(y)}" stroke="#ddd"/>')
    parts.append(f'<text x="4" y="{TOP - 4}" font-size="10">{escape(y_label)}</text>')
    return parts


def hourly_load_svg(report: CapacityReport) -> str:
    """Per phase: the p95 non-EV peak for each hour of the day (worst weekday), and its usable limit."""
    names = report.phase_names
    top = max([*report.usable_a, *(v for h in report.hours for v in h.non_ev_p95_a)])
    y_max = _nice(top * Decimal("1.1"), 25)
    plot_w, plot_h = Decimal(WIDTH - LEFT - RIGHT), Decimal(HEIGHT - TOP - BOTTOM)

    def x(hour: Decimal) -> Decimal:
        return LEFT + plot_w * hour / 24

    def y(amps: Decimal) -> Decimal:
        return HEIGHT - BOTTOM - plot_h * amps / y_max

    parts = _axes(y_max, "A")
    for hour in range(0, 25, 3):
        parts.append(f'<text x="{_n(x(Decimal(hour)))}" y="{HEIGHT - BOTTOM + 14}" font-size="10" '
                     f'text-anchor="middle">{hour:02d}:00</text>')
    for p, name in enumerate(names):
        colour = PHASE_COLOURS[p]
        limit = report.usable_a[p]
        parts.append(f'<line class="limit" x1="{LEFT}" y1="{_n(y(limit))}" x2="{WIDTH - RIGHT}" y2="{_n(y(limit))}" '
                     f'stroke="{colour}" stroke-dasharray="6 4"><title>{escape(name)} usable limit {limit} A'
                     "</title></line>")
        points = [f"{_n(x(Decimal(h.hour) + Decimal('0.5')))},{_n(y(h.non_ev_p95_a[p]))}"
                  for h in report.hours if h.non_ev_p95_a]
        if points:
            parts.append(f'<polyline class="load" fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{" ".join(points)}"><title>{escape(name)} peak non-EV load (p95)</title>'
                         "</polyline>")
        parts.append(f'<text x="{WIDTH - RIGHT - 4 - 40 * (len(names) - 1 - p)}" y="{TOP + 10}" font-size="10" '
                     f'text-anchor="end" fill="{colour}">{escape(name)}</text>')
    parts.append(f'<text x="{LEFT + 4}" y="{TOP + 10}" font-size="10">dashed: usable limit; solid: p95 peak '
                 "non-EV load</text>")
    return _frame("Peak non-EV load per hour of the day against the usable limit, per phase", parts)


def nights_svg(report: CapacityReport) -> str:
    """EVs served each night of the history, with the target as a line."""
    nights = report.nights
    target = report.upgrade.target_evs if report.upgrade is not None else None
    top = max([1, *(n.evs for n in nights), *([target] if target is not None else [])])
    y_max = _nice(Decimal(top + 1), 5)
    plot_w, plot_h = Decimal(WIDTH - LEFT - RIGHT), Decimal(HEIGHT - TOP - BOTTOM)
    slot = plot_w / max(1, len(nights))
    parts = _axes(y_max, "EVs")
    for i, night in enumerate(nights):
        bar_h = plot_h * night.evs / y_max
        x0 = LEFT + slot * i + slot / 10
        worst = night.evs == report.worst_evs
        parts.append(f'<rect class="night" x="{_n(x0)}" y="{_n(HEIGHT - BOTTOM - bar_h)}" width="{_n(slot * 8 / 10)}" '
                     f'height="{_n(bar_h)}" fill="{"#b5462f" if worst else "#6c8ebf"}"><title>'
                     f"{night.date.isoformat()}: {night.evs} EVs</title></rect>")
        if len(nights) <= 16 or i % max(1, len(nights) // 8) == 0:
            parts.append(f'<text x="{_n(x0 + slot * 4 / 10)}" y="{HEIGHT - BOTTOM + 14}" font-size="9" '
                         f'text-anchor="middle">{night.date:%m-%d}</text>')
    if target is not None:
        ty = HEIGHT - BOTTOM - plot_h * target / y_max
        parts.append(f'<line class="target" x1="{LEFT}" y1="{_n(ty)}" x2="{WIDTH - RIGHT}" y2="{_n(ty)}" '
                     f'stroke="#333" stroke-dasharray="4 3"><title>target: {target} EVs</title></line>')
        parts.append(f'<text x="{LEFT + 4}" y="{_n(ty - 3)}" font-size="10">target {target}</text>')
    return _frame("EVs that could be served each night", parts)
