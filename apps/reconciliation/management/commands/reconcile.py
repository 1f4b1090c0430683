from django.core.management.base import BaseCommand, CommandError

from apps.core.tenants import in_schema
from apps.reconciliation import report_text
from apps.reconciliation.management.commands._common import building
from apps.reconciliation.services import ReconciliationRefused, reconciliation_approve, reconciliation_compute


class Command(BaseCommand):
    help = ("Reconcile a utility bill with the chargers: losses, the EV share of the bill, revenue vs cost, each "
            "resident's share and true-up. --approve fixes the figures and, when the building has true-ups on, "
            "puts each resident's on their next statement (once).")

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug, e.g. maple-court")
        parser.add_argument("--bill", required=True, type=int, help="the bill's id (enter_utility_bill prints it)")
        parser.add_argument("--approve", action="store_true")

    def handle(self, *args, condominium, bill, approve=False, **options):
        condo = building(condominium)
        try:
            with in_schema(condo.schema_name):
                reconciliation = reconciliation_compute(bill_id=bill)
                if approve:
                    reconciliation = reconciliation_approve(reconciliation_id=reconciliation.pk)
                text = report_text.reconciliation(reconciliation)
        except ReconciliationRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(text)
