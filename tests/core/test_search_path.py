"""A connection that is lost and opened again keeps running in the tenant's schema.

The settings send `SET search_path` only when the schema changes (TENANT_LIMIT_SET_CALLS): the connection's
wrapper remembers the path it set. A new connection starts in the server's default path (public), so the
wrapper must forget what it remembered whenever it gets one, however it got it.
"""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection, transaction

from apps.charging.models import ChargePoint
from apps.core.tenants import current_condominium, in_public_schema, in_schema, stay_in_schema
from apps.ocpp.handshake import find_registration
from tests.servers import database_url_for_subprocesses

pytestmark = pytest.mark.usefixtures("committed")


def _current_schema() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        return cursor.fetchone()[0]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pid: int) -> None:
    """End that server process from a second connection and wait until it is gone."""
    with psycopg.connect(database_url_for_subprocesses(), autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]


def _chargers_in(schema: str) -> int:
    with psycopg.connect(database_url_for_subprocesses(), autocommit=True) as other:
        return other.execute(f'SELECT count(*) FROM "{schema}".charging_chargepoint').fetchone()[0]


def test_the_path_is_sent_only_when_the_schema_changes(maple_schema):
    assert settings.TENANT_LIMIT_SET_CALLS
    with in_schema(maple_schema):
        ChargePoint.objects.count()
        recorder = _Recorder()
        with connection.execute_wrapper(recorder):
            ChargePoint.objects.count()
            ChargePoint.objects.count()
    assert len(recorder.sql) == 2 and not any(sql.startswith("SET search_path") for sql in recorder.sql)
    with in_public_schema(), connection.execute_wrapper(recorder):
        assert _current_schema() == "public"
    assert recorder.sql[2].startswith("SET search_path")  # the schema changed: sent again


def test_a_connection_killed_by_the_server_is_replaced_in_the_same_schema(maple_schema):
    expected = _chargers_in(maple_schema)
    assert expected > 0  # the building's chargers: public has no such table
    with in_schema(maple_schema):
        assert ChargePoint.objects.count() == expected
        pid = _backend_pid()
        _terminate(pid)
        with pytest.raises(OperationalError):
            ChargePoint.objects.count()
        # What every request, task and consumer does between units of work.
        connection.close_if_unusable_or_obsolete()
        assert ChargePoint.objects.count() == expected
        assert _backend_pid() != pid
        assert _current_schema() == maple_schema


def test_a_connection_dropped_under_the_wrapper_is_replaced_in_the_same_schema(maple_schema):
    """The wrapper loses its connection without ``close()`` (django-tenants' migration executors and forked
    processes drop it as ``connection.connection = None``): the next one must still get the path."""
    expected = _chargers_in(maple_schema)
    with in_schema(maple_schema):
        assert ChargePoint.objects.count() == expected
        pid = _backend_pid()
        connection.connection.close()
        connection.connection = None
        assert ChargePoint.objects.count() == expected
        assert _backend_pid() != pid
        assert _current_schema() == maple_schema
    with in_public_schema():
        assert _current_schema() == "public"


class _Recorder:
    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        self.sql.append(sql)
        return execute(sql, params, many, context)


def test_a_switch_that_keeps_the_path_sends_nothing(maple_schema):
    """Entering the building a connection is already in (a service inside a task, the OCPP threads' next call)
    costs no round trip; a real change still does."""
    recorder = _Recorder()
    with in_schema(maple_schema):
        ChargePoint.objects.count()
        with connection.execute_wrapper(recorder):
            with in_schema(maple_schema):
                ChargePoint.objects.count()
            ChargePoint.objects.count()
            stay_in_schema(maple_schema)
            ChargePoint.objects.count()
    assert len(recorder.sql) == 3 and not any(sql.startswith("SET search_path") for sql in recorder.sql)
    with connection.execute_wrapper(recorder):
        stay_in_schema("public")
        assert _current_schema() == "public"
        stay_in_schema(maple_schema)
        assert _current_schema() == maple_schema
    assert [sql.startswith("SET search_path") for sql in recorder.sql[3:]] == [True, False, True, False]


def test_a_path_sent_in_a_transaction_that_rolled_back_is_sent_again(maple_schema):
    """PostgreSQL undoes a ``SET`` with the transaction that sent it: the next query must not trust it."""
    stay_in_schema("public")
    assert _current_schema() == "public"
    with pytest.raises(RuntimeError), transaction.atomic():
        stay_in_schema(maple_schema)
        ChargePoint.objects.count()
        raise RuntimeError("rolled back")
    stay_in_schema(maple_schema)  # already the schema named: nothing to switch
    assert _current_schema() == maple_schema
    assert ChargePoint.objects.count() == _chargers_in(maple_schema)


def test_the_tables_of_the_public_schema_are_read_from_a_building_without_a_switch(world, maple_schema):
    """The registrations and the buildings exist only in the public schema, which is on every building's path:
    the handshake's lookup and the building's own record need no ``SET search_path`` there and back."""
    with in_schema(maple_schema):
        ChargePoint.objects.count()
        charge_point_id = (ChargePoint.objects.filter(removed_at__isnull=True).order_by("pk")  # still registered
                           .values_list("charge_point_id", flat=True).first())
        recorder = _Recorder()
        with connection.execute_wrapper(recorder):
            registration = find_registration(charge_point_id.lower())
            condominium = current_condominium()
    assert registration is not None and registration.schema_name == maple_schema
    assert registration.charge_point_id == charge_point_id
    assert condominium.pk == world.maple.pk and condominium.company_id == world.maple.company_id
    assert len(recorder.sql) == 2 and not any(sql.startswith("SET search_path") for sql in recorder.sql)
