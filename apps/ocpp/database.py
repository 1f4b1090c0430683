"""Where the OCPP consumers' queries run: a few threads, each with its own database connection.

Channels' ``database_sync_to_async`` runs every call of the process on one thread. In a reconnect storm
every charger's handshake and boot then waited, in one queue, for each query's round trip to PostgreSQL
in turn, and on a busy machine those waits (not the CPU of the process) made the storm slow. Here up to
``OCPP_DATABASE_THREADS`` calls run at once. One charger's calls stay in order (the consumer awaits each);
calls of different chargers may overlap, as they do across daphne processes, which the services are
written for (conditional updates, claims). Each call closes stale connections before and after, as
``database_sync_to_async`` does, so ``DATABASE_CONN_MAX_AGE`` holds in every thread.

The threads' connections stay in the schema of their last call (``stay_in_schema``): each call names its
schema, and one that names the schema the connection is in sends no ``SET search_path``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django_tenants.utils import get_public_schema_name

from apps.core.tenants import stay_in_schema

P = ParamSpec("P")
T = TypeVar("T")


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, settings.OCPP_DATABASE_THREADS), thread_name_prefix="ocpp-db")


def _on_thread(fn: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    return database_sync_to_async(fn, thread_sensitive=False, executor=_executor())


def run(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``fn`` made awaitable, run in the public schema on one of the OCPP database threads."""

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        stay_in_schema(get_public_schema_name())
        return fn(*args, **kwargs)

    return _on_thread(call)


def run_on_shared_tables(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``fn``, which reads only tables that exist in the public schema alone (the tenant registry, the
    chargers' registrations), made awaitable on one of the OCPP database threads in whatever schema the
    thread's connection is in: the public schema is on every building's search path, so no ``SET
    search_path`` goes out before it (a handshake, then its charger's queries, would otherwise switch twice
    per charger). Not for tables that also exist in the buildings' schemas (content types)."""
    return _on_thread(fn)


async def run_in_schema(schema_name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in a building's schema, on one of the OCPP database threads."""

    def call() -> T:
        stay_in_schema(schema_name)
        return fn(*args, **kwargs)

    return await _on_thread(call)()
