from django.core.management.base import BaseCommand, CommandError

from apps.core.tenants import in_schema
from apps.reconciliation.management.commands._common import building, day, decimal
from apps.reconciliation.selectors import investment_recovery
from apps.reconciliation.services import ReconciliationRefused, investment_add


class Command(BaseCommand):
    help = ("Record what the HOA paid for charging equipment (a grant or rebate: a negative amount), then print "
            "the investment recovery: recovered so far, remaining, projected payback month.")

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug, e.g. maple-court")
        parser.add_argument("--amount", required=True)
        parser.add_argument("--date", required=True, help="YYYY-MM-DD")
        parser.add_argument("--description", required=True, help="what was bought, e.g. '4 chargers and wiring'")

    def handle(self, *args, condominium, amount, date, description, **options):
        condo = building(condominium)
        try:
            with in_schema(condo.schema_name):
                investment_add(description=description, amount=decimal("--amount", amount), on=day("--date", date))
                recovery = investment_recovery()
        except ReconciliationRefused as error:
            raise CommandError(str(error)) from None
        payback = recovery.payback_month.strftime("%Y-%m") if recovery.payback_month else "-"
        status = recovery.status.value.replace("_", " ")
        self.stdout.write(f"{condo.slug}: invested {recovery.invested} {condo.currency}, recovered "
                          f"{recovery.recovered}, remaining {recovery.remaining}; {status}, payback {payback}")
