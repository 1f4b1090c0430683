from django.core.management.base import BaseCommand, CommandError

from apps.core.tenants import in_schema
from apps.reconciliation.management.commands._common import building, day, decimal
from apps.reconciliation.services import ReconciliationRefused, utility_bill_enter


class Command(BaseCommand):
    help = ("Enter the building's utility bill for one billing cycle (amounts in the building's currency, "
            "kWh with up to three decimals). Then: manage.py reconcile --condominium SLUG --bill ID")

    def add_arguments(self, parser):
        parser.add_argument("--condominium", required=True, help="the building's slug, e.g. maple-court")
        parser.add_argument("--from", dest="start", required=True, help="the bill's first day, YYYY-MM-DD")
        parser.add_argument("--to", dest="end", required=True, help="the bill's last day (inclusive), YYYY-MM-DD")
        parser.add_argument("--kwh", required=True, help="the building's kWh on the bill")
        parser.add_argument("--energy", required=True, help="energy charges")
        parser.add_argument("--demand", default="0", help="demand charges")
        parser.add_argument("--fixed", default="0", help="fixed (customer, meter) charges")
        parser.add_argument("--taxes", default="0", help="taxes on the bill")
        parser.add_argument("--ev-kwh", dest="ev_kwh", help="the EV sub-meter's kWh for the period, if there is one")
        parser.add_argument("--note", default="")

    def handle(self, *args, condominium, start, end, kwh, energy, demand, fixed, taxes, ev_kwh=None, note="",
               **options):
        condo = building(condominium)
        values = {
            "period_start": day("--from", start), "period_end": day("--to", end), "kwh": decimal("--kwh", kwh),
            "energy_charges": decimal("--energy", energy), "demand_charges": decimal("--demand", demand),
            "fixed_charges": decimal("--fixed", fixed), "taxes": decimal("--taxes", taxes),
            "ev_kwh": decimal("--ev-kwh", ev_kwh), "note": note,
        }
        try:
            with in_schema(condo.schema_name):
                bill = utility_bill_enter(**values)
        except ReconciliationRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"{condo.slug}: bill {bill.pk} entered, {bill.period_start}..{bill.period_end}, "
                          f"total {bill.total} {bill.currency}")
