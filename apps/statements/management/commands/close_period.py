import sys

from django.core.management.base import BaseCommand, CommandError

from apps.core.tenants import in_public_schema, in_schema
from apps.statements import periods
from apps.statements.closing import period_close
from apps.statements.services import StatementRefused
from apps.tenancy.models import Condominium


class Command(BaseCommand):
    help = ("Close a building's month: one finalized statement per resident with activity or fees, then their "
            "PDFs and mails (by the workers). Safe to run again: a closed month is left as it is.")

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug, e.g. maple-court")
        parser.add_argument("--period", required=True, help="the month, YYYY-MM (in the building's time zone)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, condominium, period, no_progress=False, **options):
        try:
            month = periods.parse_month(period)
        except ValueError as error:
            raise CommandError(f"--period: {error}") from None
        with in_public_schema():
            condo = Condominium.objects.filter(slug=condominium).first()
        if condo is None:
            raise CommandError(f"--condominium: no building {condominium!r} (see manage.py commission)")
        bar = None if no_progress or not sys.stderr.isatty() else _Bar(self.stderr)
        try:
            with in_schema(condo.schema_name):
                result = period_close(month=month, progress=bar)
        except StatementRefused as error:
            raise CommandError(str(error)) from None
        if bar:
            bar.done()
        if not result.closed_now:
            self.stdout.write(
                f"{condo.slug} {period}: already closed ({result.statements} statements); nothing changed"
            )
            return
        self.stdout.write(
            f"{condo.slug} {period}: {result.statements} statements, {result.sessions_billed} sessions billed "
            f"({result.prior_period_sessions} from earlier months), total {result.total} {condo.currency}"
        )
        if result.sessions_held:
            self.stdout.write(f"  {result.sessions_held} sessions held for review are not billed yet")
        if result.sessions_without_resident:
            self.stdout.write(f"  {result.sessions_without_resident} sessions have no resident (unknown card) "
                              "and are not on any statement")


class _Bar:
    def __init__(self, out):
        self.out = out
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // max(total, 1)
        if percent != self.shown:
            self.shown = percent
            filled = percent // 4
            self.out.write(f"\r[{'#' * filled}{'.' * (25 - filled)}] {done}/{total} residents", ending="")
            self.out.flush()

    def done(self) -> None:
        self.out.write("")
