"""Running code inside a tenant's schema: the one way, sync and async, for everything that is not a web request
to a building's own host (tasks, consumers, commands, the company site's views, tests).

    with in_schema("maple_court"): ...            # a building's schema by name (no query)
    with in_public_schema(): ...                  # the public schema: the tenant registry, logins, chargers' ids
    with in_condominium("maple_court") as condo:  # a building looked up in the registry first (DoesNotExist)
    current_condominium()                         # the building whose schema is active (with its company)
    await run_in_schema("maple_court", fn, *args, **kwargs)  # from async code: fn on the database thread
    stay_in_schema("maple_court")                 # a thread that owns its connection: switch, do not restore

Each but the last restores the schema that was active before, also when the code raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from channels.db import database_sync_to_async
from django.db import connection
from django_tenants.utils import get_public_schema_name

from apps.tenancy.models import Condominium

T = TypeVar("T")


def forget_search_path(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created``: a new connection starts in the server's default search_path, so make the wrapper
    send ``SET search_path`` again before its next query.

    With TENANT_LIMIT_SET_CALLS django-tenants sends it only when it believes the path is not set yet
    (``search_path_set_schemas``). It forgets the path on ``close()`` and on a rollback, but not when the
    wrapper gets a new connection by another way (a connection dropped as ``connection.connection = None``,
    as django-tenants' own migration executors and forked processes do): the queries of that new
    connection then ran in the public schema ("relation ... does not exist"). Forgetting it here, for every
    new connection whatever opened it, closes that for good.
    """
    if hasattr(connection, "search_path_set_schemas"):
        connection.search_path_set_schemas = None


def in_schema(schema_name: str) -> AbstractContextManager[None]:
    """Enter a schema by name for the ``with`` block."""
    return _switched(lambda: connection.set_schema(schema_name))


def in_public_schema() -> AbstractContextManager[None]:
    return _switched(connection.set_schema_to_public)


@contextmanager
def _switched(enter: Callable[[], None]) -> Iterator[None]:
    """django-tenants' ``schema_context``, without a ``SET search_path`` when the path does not change."""
    previous = connection.tenant
    _keeping_path(enter)
    try:
        yield
    finally:
        _keeping_path(lambda: connection.set_tenant(previous) if previous is not None
                      else connection.set_schema_to_public())


def _keeping_path(switch: Callable[[], None]) -> None:
    """Switch the connection's schema; when the search path stays the one already sent, keep the wrapper's note of
    it. django-tenants forgets the path at every switch, so a ``with in_schema(x)`` inside code already in ``x``
    (a task, a service, the OCPP threads' next unit of work) sent ``SET search_path`` again: a round trip."""
    sent = connection.search_path_set_schemas
    switch()
    if sent is not None and connection._get_cursor_search_paths() == sent:
        connection.search_path_set_schemas = sent


def stay_in_schema(schema_name: str) -> None:
    """Switch this thread's connection to ``schema_name`` and leave it there; nothing is sent when it is there already.

    For threads that own their connection and name the schema at every unit of work (the OCPP consumers'
    database threads, the group commit), not for code that shares a thread with others. django-tenants
    forgets the ``SET search_path`` it sent at every switch, even back to the same schema, and ``in_schema``
    switches twice (in, then back): each unit of work of those threads cost a ``SET search_path`` round trip
    (three to four per charger in a reconnect storm). A rollback or a new connection still makes the next
    query send it again (django-tenants, ``forget_search_path``).
    """
    if connection.schema_name != schema_name or not connection.include_public_schema:
        _keeping_path(lambda: connection.set_schema(schema_name))


async def run_in_schema(schema_name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the sync ``fn`` in a schema, from async code, on the database thread (closing stale connections)."""

    def run() -> T:
        with in_schema(schema_name):
            return fn(*args, **kwargs)

    return await database_sync_to_async(run)()


@contextmanager
def in_condominium(condominium: Condominium | str) -> Iterator[Condominium]:
    """Enter the schema of a condominium given as an object or by schema name."""
    if isinstance(condominium, str):
        with in_public_schema():
            condominium = Condominium.objects.get(schema_name=condominium)
    with in_schema(condominium.schema_name):
        yield condominium


def all_condominiums() -> list[Condominium]:
    with in_public_schema():
        return list(Condominium.objects.exclude(schema_name=get_public_schema_name()).order_by("schema_name"))


def current_condominium() -> Condominium:
    """The building whose schema is active (its company loaded too). One query, in any schema, and no switch:
    the registry of buildings exists only in the public schema, which is on every building's search path."""
    return Condominium.objects.select_related("company").get(schema_name=connection.schema_name)


def building_zone(condominium: Condominium) -> ZoneInfo:
    """The building's time zone: months, due dates and every time shown to its people are local to it."""
    return ZoneInfo(condominium.timezone)
