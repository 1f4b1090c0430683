"""Test-wide fixtures.

The test database is created once per run. On top of it, ``world`` holds three
condominiums under two companies, created once per session and committed, so
that real daphne processes and Celery workers can see them as well:

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


def _build_world() -> World:
    with in_public_schema():
        acme = factories.company("acme", "Acme Property Management")
        harbor = factories.company("harbor", "Harbor Residential")
        maple = factories.condominium(acme, "maple-court")
        oak = factories.condominium(acme, "oak-tower")
        harbor_view = factories.condominium(harbor, "harbor-view")
        world = World(
            acme=acme,
            harbor=harbor,
            maple=maple,
            oak=oak,
            harbor_view=harbor_view,
            acme_manager=factories.manager(acme, "manager@acme.test"),
            harbor_manager=factories.manager(harbor, "manager@harbor.test"),
            maple_board=factories.board_member(maple, "board@maple.test"),
            maple_resident=factories.resident(maple, "alice@maple.test", "101", id_tags=("04A1B2C3D4",)),
            oak_resident=factories.resident(oak, "olga@oak.test", "7A", id_tags=("0B0B0B0B",)),
            harbor_resident=factories.resident(harbor_view, "hana@harbor.test", "12", id_tags=("0C0C0C0C",)),
        )
        factories.charger(maple, "TEST-MAPLE-1", parking_spots=("P01", "P02"))
        factories.charger(harbor_view, "TEST-HARBOR-1")
    return world


@pytest.fixture(scope="session")
def world(_test_database_only, django_db_blocker) -> World:
    with django_db_blocker.unblock():
        return _build_world()


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
