"""``manage.py export_audit --condominium SLUG --period YYYY-MM --format csv|xlsx|pdf --output PATH``."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import FORMATS, NOT_CLOSED, AuditRefused, AuditRequest, audit_export
from apps.statements.periods import parse_month


class Command(BaseCommand):
    help = ("The board's audit export of a building's month (docs/audit.md): a CSV folder with MANIFEST.sha256, "
            "an XLSX workbook or a PDF report. Card ids are written in full unless --mask-id-tags.")

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug, e.g. maple-court")
        parser.add_argument("--period", required=True, help="the building's month, YYYY-MM")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--output", required=True, help="a folder (csv) or a file (xlsx, pdf)")
        parser.add_argument("--include-ocpp-log", action="store_true", help="csv: add ocpp_log.csv of the month")
        parser.add_argument("--mask-id-tags", action="store_true", help="mask card ids as board members see them")
        parser.add_argument("--force", action="store_true", help="replace an earlier export at --output")

    def handle(self, *args, condominium, period, format, output, include_ocpp_log, mask_id_tags, force, **options):
        try:
            first_day = parse_month(period)
        except ValueError as error:
            raise CommandError(f"--period: {error}") from None
        if include_ocpp_log and format != "csv":
            raise CommandError("--include-ocpp-log goes with --format csv (the log is one more file of the folder)")
        request = AuditRequest(slug=condominium, first_day=first_day, fmt=format, mask_id_tags=mask_id_tags,
                               include_ocpp_log=include_ocpp_log)
        try:
            written, closed = audit_export(request, output=Path(output), force=force)
        except AuditRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{condominium} {period}: {format} written to {written}")
        if not closed:
            self.stderr.write(f"warning: {NOT_CLOSED}")
