from django.core.management.base import BaseCommand, CommandError

from apps.tenancy.models import ChargerRegistration
from apps.tenancy.services import charger_password_reset


class Command(BaseCommand):
    help = "Generate, store and print a new Basic-auth password for a charger (type it into the charger)."

    def add_arguments(self, parser):
        parser.add_argument("charge_point_id", help="the charger's chargePointId")

    def handle(self, *args, charge_point_id, **options):
        try:
            password, password_hash = charger_password_reset(charge_point_id=charge_point_id)
        except ChargerRegistration.DoesNotExist:
            raise CommandError(f"no charger {charge_point_id!r} is registered (see the commissioning file)") from None
        self.stdout.write(f"New password for {charge_point_id}: {password}")
        self.stdout.write("Type it into the charger's OCPP settings; its next connection needs it.")
        self.stdout.write("In the building's commissioning file, replace the charger's password with:")
        self.stdout.write(f'    password_hash: "{password_hash}"')
