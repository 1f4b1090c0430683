"""A connection that is lost and opened again keeps running in the tenant's schema.

The settings send `SET search_path` only when the schema changes (TENANT_LIMIT_SET_CALLS): the connection's
wrapper remembers the path it set. A new connection starts in the server's default path (public), so the
wrapper must forget what it remembered whenever it gets one, however it got it.
"""

from __future__ import annotations

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection

from apps.charging.models import ChargePoint
from apps.core.tenants import in_public_schema, in_schema
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
