from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.core.tenants import in_condominium
from apps.tenancy.models import Condominium
from apps.visitors import labels, services


class Command(BaseCommand):
    help = "Write the building's printable A4 sheet of visitor labels (a QR code per connector) as a PDF."

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug")
        parser.add_argument("--output", required=True, type=Path, help="the PDF file to write")
        parser.add_argument("--charger", action="append", default=[], metavar="ID",
                            help="only this charger's connectors (repeatable); every connector by default")

    def handle(self, *args, condominium: str, output: Path, charger: list[str], **options):
        if not Condominium.objects.filter(slug=condominium).exists():
            raise CommandError(f"--condominium: no building with the slug {condominium!r}")
        with in_condominium(Condominium.objects.get(slug=condominium)):
            pdf = labels.render_pdf(chargers=charger or None)
            count = len(services.visitor_codes_ensure(charger or None))
        output.write_bytes(pdf)
        self.stdout.write(f"{output}: {count} label(s), {len(pdf)} bytes")
