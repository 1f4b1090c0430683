"""Test-wide fixtures.

The test database is created once per run. On top of it, ``world`` holds three
condominiums under two companies, commissioned once per session from the YAML
below (as production builds its buildings) and committed, so that real daphne
processes and Celery workers can see them as well:

    acme (Acme Property Management): maple-court, oak-tower
    harbor (Harbor Residential):    harbor-view

Tests that only read or write through the ORM use the ``db`` fixture and are
rolled back. Do not use ``transactional_db`` or ``live_server``: their flush
would empty the public schema (the tenants themselves). A test that needs data
committed for another process uses ``committed`` and makes its own rows with
unique names; the test database is dropped at the end of the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import tests.dbsetup  # noqa: F401  (before any fixture runs: committed-only runs get a test database)
from apps.accounts.models import User
from apps.commissioning.services import commission_text
from apps.core.tenants import in_public_schema
from apps.tenancy.models import Company, Condominium
from tests import factories
from tests.mailserver import Inbox, MailServer
from tests.servers import database_url_for_subprocesses


@dataclass
class World:
    acme: Company
    harbor: Company
    maple: Condominium
    oak: Condominium
    harbor_view: Condominium
    acme_manager: User
    harbor_manager: User
    maple_board: User
    maple_resident: User
    oak_resident: User
    harbor_resident: User


# The session's buildings, in the format installers use (docs/commissioning.md). Residents that tests add
# for themselves come from tests/factories.py.
MAPLE_COURT = """
company: {slug: acme, name: Acme Property Management}
condominium:
  slug: maple-court
  name: Maple Court
  domains: [maple-court.localhost]
  timezone: America/Los_Angeles
  currency: USD
electrical:
  supply: {voltage_v: 230, phases: 3, max_current_a: 200, derate: 0.8, margin_a: 5}
chargers:
  - id: TEST-MAPLE-1
    password: "%(charger_password)s"
    circuit: supply
    connectors:
      - {id: 1, max_current_a: 32, phases: 1, parking_spot: P01}
      - {id: 2, max_current_a: 32, phases: 1, parking_spot: P02}
units:
  - {number: "101"}
people:
  - {email: manager@acme.test, name: Manager, roles: [manager]}
  - {email: board@maple.test, name: Board, roles: [board]}
  - {email: alice@maple.test, name: Alice, unit: "101", roles: [resident], id_tags: ["04A1B2C3D4"]}
tariffs:  # the billing spec's T-RES and T-VIS (docs/tariffs.md)
  - code: residents
    name: Residents
    applies_to: [{who: everyone}]
    versions:
      - effective_from: 2026-01-01
        elements:
          - label: night
            restrictions: {start_time: "22:00", end_time: "07:00"}
            price_components: [{type: ENERGY, price: 0.18}]
          - label: day
            price_components: [{type: ENERGY, price: 0.32}]
          - label: idle
            price_components: [{type: PARKING_TIME, price: 0.10, grace_minutes: 30, cap: 20.00}]
  - code: visitors
    name: Visitors
    applies_to: [{who: visitors}, {charger: TEST-MAPLE-1, connector: 2}]
    versions:
      - effective_from: 2026-01-01
        elements:
          - restrictions: {min_duration: 601}
            price_components: [{type: TIME, price: 2.40, step_size: 900}]
"""
OAK_TOWER = """
company: {slug: acme, name: Acme Property Management}
condominium:
  slug: oak-tower
  name: Oak Tower
  domains: [oak-tower.localhost]
  timezone: America/Los_Angeles
  currency: USD
electrical:
  supply: {voltage_v: 230, phases: 3, max_current_a: 200, derate: 0.8, margin_a: 5}
units:
  - {number: "7A"}
people:
  - {email: olga@oak.test, name: Olga, unit: "7A", roles: [resident], id_tags: ["0B0B0B0B"]}
"""
HARBOR_VIEW = """
company: {slug: harbor, name: Harbor Residential}
condominium:
  slug: harbor-view
  name: Harbor View
  domains: [harbor-view.localhost]
  timezone: America/Los_Angeles
  currency: USD
electrical:
  supply: {voltage_v: 230, phases: 3, max_current_a: 200, derate: 0.8, margin_a: 5}
chargers:
  - id: TEST-HARBOR-1
    password: "%(charger_password)s"
    circuit: supply
    connectors:
      - {id: 1, max_current_a: 32, phases: 1}
      - {id: 2, max_current_a: 32, phases: 1}
units:
  - {number: "12"}
people:
  - {email: manager@harbor.test, name: Manager, roles: [manager]}
  - {email: hana@harbor.test, name: Hana, unit: "12", roles: [resident], id_tags: ["0C0C0C0C"]}
"""
WORLD_PEOPLE = ("manager@acme.test", "board@maple.test", "alice@maple.test", "olga@oak.test",
                "manager@harbor.test", "hana@harbor.test")
WORLD_FILES = {"maple-court.yaml": MAPLE_COURT, "oak-tower.yaml": OAK_TOWER, "harbor-view.yaml": HARBOR_VIEW}


def _build_world() -> World:
    with in_public_schema():
        for source, text in WORLD_FILES.items():
            commission_text(text % {"charger_password": factories.CHARGER_PASSWORD}, source=source, invite=False)
        # Commissioned people have no password until they choose one; as demo_logins does for the demo:
        people = {email: factories.set_password(User.objects.get(email=email)) for email in WORLD_PEOPLE}
        condos = {condo.slug: condo for condo in Condominium.objects.all()}
        return World(
            acme=Company.objects.get(slug="acme"),
            harbor=Company.objects.get(slug="harbor"),
            maple=condos["maple-court"],
            oak=condos["oak-tower"],
            harbor_view=condos["harbor-view"],
            acme_manager=people["manager@acme.test"],
            harbor_manager=people["manager@harbor.test"],
            maple_board=people["board@maple.test"],
            maple_resident=people["alice@maple.test"],
            oak_resident=people["olga@oak.test"],
            harbor_resident=people["hana@harbor.test"],
        )


@pytest.fixture(scope="session")
def world(_test_database_only, django_db_blocker) -> World:
    with django_db_blocker.unblock():
        return _build_world()


@pytest.fixture
def maple_schema(world) -> str:
    """Maple Court's schema, as commissioning named it."""
    return world.maple.schema_name


@pytest.fixture(scope="session")
def _test_database_only(django_db_setup, django_db_blocker):
    from django.db import connection

    assert connection.settings_dict["NAME"].startswith("test_"), "refusing to write to a non-test database"
    yield
    # Consumers and other threads ran ORM calls on connections that outlive the tests;
    # end them so that the test database can be dropped.
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def committed(_test_database_only, django_db_blocker):
    """Database access outside a rolled-back transaction: writes are visible to other processes.

    Do not combine with the ``db`` fixture or the django_db mark, whose transaction would hide the writes.
    """
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def test_database_url(_test_database_only) -> str:
    """A DATABASE_URL that points another process (daphne, a Celery worker) at the test database."""
    return database_url_for_subprocesses()


@pytest.fixture(autouse=True)
def _start_in_the_public_schema():
    """Requests to a building's host leave the connection in its schema; each test starts from public."""
    from django.db import connection

    connection.set_schema_to_public()


@pytest.fixture
def smtp_inbox(settings) -> Inbox:
    """Django sends e-mail through its real SMTP backend to a real SMTP server on loopback."""
    server = MailServer()
    server.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    try:
        yield server.inbox
    finally:
        server.stop()
