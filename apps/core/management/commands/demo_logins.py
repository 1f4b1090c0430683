"""Give the people of the example buildings a known password, and print where to log in.

For the demo only: it refuses to run in production.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.commissioning.services import load_file

DEMO_PASSWORD = "demo-password"
ADMIN_EMAIL = "admin@example.com"


class Command(BaseCommand):
    help = "Set the demo password for the people in examples/*.yaml and print the demo logins."

    def add_arguments(self, parser):
        parser.add_argument("--port", default="8000")
        parser.add_argument("files", nargs="*", default=None)

    def handle(self, *args, port, files, **options):
        if settings.PRODUCTION:
            raise CommandError("demo_logins sets known passwords; it does not run with HOA_ENV=production")
        files = files or sorted(str(p) for p in (Path(settings.BASE_DIR) / "examples").glob("*.yaml"))
        rows = []
        for path in files:
            spec = load_file(path)
            domain = spec.condominium.domains[0]
            for person in spec.people:
                user = User.objects.get(email__iexact=person.email)
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
                where = (
                    f"http://{settings.PUBLIC_HOST}:{port}/"
                    if person.roles == ["manager"]
                    else f"http://{domain}:{port}/"
                )
                rows.append((", ".join(person.roles), person.email, where))
        admin = User.objects.filter(email=ADMIN_EMAIL).first() or User.objects.create_superuser(ADMIN_EMAIL)
        admin.set_password(DEMO_PASSWORD)
        admin.save(update_fields=["password"])
        rows.append(("platform admin", ADMIN_EMAIL, f"http://{settings.PUBLIC_HOST}:{port}/admin/"))

        self.stdout.write("")
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD})")
        seen = set()
        for roles, email, where in rows:
            if (email, where) in seen:
                continue
            seen.add((email, where))
            self.stdout.write(f"  {roles:<18} {email:<28} {where}")
        self.stdout.write("")
        self.stdout.write(f"Company site: http://{settings.PUBLIC_HOST}:{port}/   (managers see all their buildings)")
        self.stdout.write("")
