"""Where the OCPP consumers' queries run: a few threads, each with its own database connection.

Channels' ``database_sync_to_async`` runs every call of the process on one thread. In a reconnect storm
every charger's handshake and boot then waited, in one queue, for each query's round trip to PostgreSQL
in turn, and on a busy machine those waits (not the CPU of the process) made the storm slow. Here up to
``OCPP_DATABASE_THREADS`` calls run at once. One charger's calls stay in order (the consumer awaits each);
calls of different chargers may overlap, as they do across daphne processes, which the services are
written for (conditional updates, claims). Each call closes stale connections before and after, as
``database_sync_to_async`` does, so ``DATABASE_CONN_MAX_AGE`` holds in every thread.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, ParamSpec, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

from apps.core.tenants import in_schema

P = ParamSpec("P")
T = TypeVar("T")


@cache
def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=max(1, settings.OCPP_DATABASE_THREADS), thread_name_prefix="ocpp-db")


def run(fn: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """``fn`` made awaitable, run on one of the OCPP database threads."""
    return database_sync_to_async(fn, thread_sensitive=False, executor=_executor())


async def run_in_schema(schema_name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in a building's schema, on one of the OCPP database threads."""

    def call() -> T:
        with in_schema(schema_name):
            return fn(*args, **kwargs)

    return await run(call)()
