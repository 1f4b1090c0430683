import smtplib

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.services import InvitationRefused, user_invite_by_email


class Command(BaseCommand):
    help = "E-mail people (again) a one-time link to choose their password."

    def add_arguments(self, parser):
        parser.add_argument("emails", nargs="+", metavar="EMAIL")

    def handle(self, *args, emails, **options):
        for email in emails:
            try:
                invitation = user_invite_by_email(email=email)
            except InvitationRefused as exc:
                raise CommandError(str(exc)) from None
            except (smtplib.SMTPException, OSError) as exc:
                raise CommandError(f"the invitation to {email} could not be sent: {exc}") from None
            self.stdout.write(f"invited {invitation.email} ({invitation.language}): the link is valid once")
