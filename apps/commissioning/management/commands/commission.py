from django.core.management.base import BaseCommand, CommandError

from apps.commissioning.schema import CommissioningError
from apps.commissioning.services import commission_file


class Command(BaseCommand):
    help = "Create or update a condominium from a commissioning file (YAML). Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", help="commissioning file(s), see docs/commissioning.md")

    def handle(self, *args, files, **options):
        for path in files:
            try:
                report = commission_file(path)
            except CommissioningError as exc:
                raise CommandError(f"{path} was refused; nothing was changed:\n{exc}") from None
            self.stdout.write(f"{path}: condominium {report.condominium}")
            for line in report.lines():
                self.stdout.write(f"  {line}")
