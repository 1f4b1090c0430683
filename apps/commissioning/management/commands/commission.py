from django.core.management.base import BaseCommand, CommandError

from apps.commissioning.schema import CommissioningError
from apps.commissioning.services import commission_file


class Command(BaseCommand):
    help = "Create or update a condominium from a commissioning file (YAML). Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", help="commissioning file(s), see docs/commissioning.md")
        parser.add_argument(
            "--no-invite",
            action="store_true",
            help="do not e-mail new people a link to choose their password (they can use manage.py invite later)",
        )

    def handle(self, *args, files, no_invite=False, **options):
        not_sent = []
        for path in files:
            try:
                report = commission_file(path, invite=not no_invite)
            except CommissioningError as exc:
                raise CommandError(f"{path} was refused; nothing was changed:\n{exc}") from None
            self.stdout.write(f"{path}: condominium {report.condominium}")
            for line in report.lines():
                self.stdout.write(f"  {line}")
            not_sent += report.invitations_failed
        if not_sent:
            raise CommandError(
                "the buildings were commissioned, but some invitations could not be sent; run the command again "
                "once the mail server works, or use manage.py invite EMAIL:\n" + "\n".join(not_sent)
            )
