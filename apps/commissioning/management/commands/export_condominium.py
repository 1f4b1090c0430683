from django.core.management.base import BaseCommand, CommandError

from apps.commissioning.services import export_condominium
from apps.tenancy.models import Condominium


class Command(BaseCommand):
    help = "Write a condominium back out as a commissioning file (YAML), to stdout or --output."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--output", "-o", help="write to this file instead of stdout")

    def handle(self, *args, slug, output=None, **options):
        try:
            text = export_condominium(slug)
        except Condominium.DoesNotExist:
            raise CommandError(f"no condominium with slug {slug!r}") from None
        if output:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
            self.stdout.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")
