"""``manage.py capacity_report SLUG``: the installer's capacity report of a building, as text or JSON."""

from __future__ import annotations

import json
import re
from datetime import time
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.core.capacity import DEFAULT_DAYS, CapacityRequest, CapacityUnavailable, building_capacity_report
from apps.core.tenants import in_public_schema, in_schema
from apps.electrical import capacity
from apps.tenancy.models import Condominium


def clock(text: str) -> time:
    if not re.fullmatch(r"\d{2}:\d{2}", text):
        raise ValueError(text)
    return time.fromisoformat(text)


def kwh(text: str) -> int:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None
    if not value.is_finite():
        raise ValueError(text)
    return int(value * 1000)


class Command(BaseCommand):
    help = ("The building's spare capacity from its site-meter history: peak load per weekday and hour, spare "
            "current per phase, EVs served a night, the upgrade needed (docs/capacity.md).")

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the building, e.g. maple-court")
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="history to read (7-3650 days)")
        parser.add_argument("--kwh", type=kwh, default=Decimal(20) * 1000, help="energy each EV needs a night")
        parser.add_argument("--ready-by", type=clock, default=time(7, 0), help="HH:MM the EVs must be done by")
        parser.add_argument("--night-start", type=clock, default=time(18, 0), help="HH:MM the night window opens")
        parser.add_argument("--evs", type=int, default=None,
                            help="EVs to plan for (default: the parking spots with a connector)")
        parser.add_argument("--growth", type=Decimal, default=Decimal(0),
                            help="plan the non-EV load this many percent above what was measured")
        parser.add_argument("--format", choices=("text", "json"), default="text")

    def handle(self, *args, slug, days, kwh, ready_by, night_start, evs, growth, format, **options):
        with in_public_schema():
            condo = Condominium.objects.filter(slug=slug).first()
        if condo is None:
            raise CommandError(f"no building {slug!r}: give the slug of its commissioning file")
        request = CapacityRequest(days=days, energy_wh=int(kwh), ready_by=ready_by, night_start=night_start,
                                  target_evs=evs, growth=growth / 100)
        with in_schema(condo.schema_name):
            try:
                report = building_capacity_report(zone_name=condo.timezone, request=request, now=timezone.now())
            except CapacityUnavailable as exc:
                raise CommandError(f"{slug}: {exc}") from None
        if format == "json":
            self.stdout.write(json.dumps({"building": condo.slug, "name": condo.name, "timezone": condo.timezone,
                                          **capacity.report_as_dict(report)}, indent=2))
        else:
            self.stdout.write(capacity.render_text(report, title=f"{condo.name} ({condo.slug})"), ending="")
