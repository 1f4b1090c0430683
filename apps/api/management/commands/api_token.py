"""The API token of a person (made on first use): ``manage.py api_token manager@acme.test [--rotate]``.

The token acts as that person: it reads what they may read in the web app, in every building where they have a
role. ``--rotate`` replaces it (the old one stops working at once); ``--revoke`` deletes it.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from apps.accounts.models import User
from apps.core.tenants import in_public_schema


class Command(BaseCommand):
    help = "Print (or rotate, or revoke) a person's API token."

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--rotate", action="store_true", help="replace the token; the old one stops working")
        group.add_argument("--revoke", action="store_true", help="delete the token")

    def handle(self, *args, email: str, rotate: bool, revoke: bool, **options) -> None:
        with in_public_schema():
            user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
            if user is None:
                raise CommandError(f"no active account with the e-mail {email!r}")
            if rotate or revoke:
                Token.objects.filter(user=user).delete()
            if revoke:
                self.stdout.write(f"{user.email}: API token revoked")
                return
            token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
