from django.core.management.base import BaseCommand, CommandError

from apps.buildings.models import Resident
from apps.core.tenants import in_schema
from apps.reconciliation import report_text
from apps.reconciliation.management.commands._common import building
from apps.reconciliation.selectors import yearly_summary


class Command(BaseCommand):
    help = "A resident's year: sessions, kWh and amounts by month, statements, payments, fees (text or PDF)."

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug, e.g. maple-court")
        parser.add_argument("--resident", required=True, help="the resident's e-mail")
        parser.add_argument("--year", required=True, type=int)
        parser.add_argument("--format", choices=["text", "pdf"], default="text")
        parser.add_argument("--output", help="the PDF's file (default: summary-EMAIL-YEAR.pdf)")

    def handle(self, *args, condominium, resident, year, format="text", output=None, **options):
        condo = building(condominium)
        if not 2000 <= year <= 2100:
            raise CommandError(f"--year: {year} is not a plausible year")
        with in_schema(condo.schema_name):
            found = Resident.objects.filter(user__email__iexact=resident.strip()).order_by("-is_active", "pk").first()
            if found is None:
                raise CommandError(f"--resident: nobody with e-mail {resident!r} lives in {condo.slug}")
            summary = yearly_summary(resident_id=found.pk, year=year)
            if format == "text":
                self.stdout.write(report_text.year(summary))
                return
            from apps.reconciliation.documents import year_pdf

            pdf = year_pdf(summary, condo)
        path = output or f"summary-{found.user.email}-{year}.pdf"
        with open(path, "wb") as fh:
            fh.write(pdf)
        self.stdout.write(f"{path}: {len(pdf)} bytes")
