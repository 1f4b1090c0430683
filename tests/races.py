"""Races between two database connections, made to happen every time.

Each side runs on its own thread with its own database connection, against the real PostgreSQL. The test's
own connection holds a lock that every side needs, waits until each side is stuck behind it (or behind the
side before it), and only then lets go: whatever a side read before getting stuck, it read without seeing
the other side's work, and whatever rows it locked before getting stuck it holds while the next side runs.
Code that decides on such a read, or that locks rows in another order than its rival, is caught; code that
takes the right locks first, in the same order, is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from apps.core.tenants import in_schema
from tests.helpers import wait_for


class Side(threading.Thread):
    """One side of a race: a call on its own thread, hence on its own database connection."""

    def __init__(self, schema_name: str, fn: Callable[[], Any]):
        super().__init__(daemon=True)
        self.schema_name = schema_name
        self.fn = fn
        self.pid: int | None = None
        self.connected = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with in_schema(self.schema_name):
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    self.pid = cursor.fetchone()[0]
                self.connected.set()
                self.result = self.fn()
        except BaseException as error:  # reported by race()
            self.error = error
        finally:
            self.connected.set()
            connection.close()


def _blocked(pid: int) -> bool:
    # pg_blocking_pids is live; pg_stat_activity would be a snapshot frozen for this transaction.
    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", [pid])
        return cursor.fetchone()[0]


def _wait_until_stuck(side: Side) -> None:
    assert side.connected.wait(10), "the side never connected"
    wait_for(lambda: not side.is_alive() or _blocked(side.pid), 10, interval=0.005,
             what="the side stuck behind the held lock")


def race(schema_name: str, hold_sql: str, *calls: Callable[[], Any], params: list | None = None) -> list[Any]:
    """Run ``calls`` side by side in the building's schema while this connection holds the lock ``hold_sql``
    takes; their results.

    Each call starts once the previous one is stuck (so they queue in this order), then the lock goes.
    """
    sides = [Side(schema_name, fn) for fn in calls]
    with in_schema(schema_name), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(hold_sql, params)
        for side in sides:
            side.start()
            _wait_until_stuck(side)
        # Every side is now waiting for the lock; the commit below releases them together.
    for side in sides:
        side.join(30)
        assert not side.is_alive(), "a side did not finish"
    for side in sides:
        if side.error is not None:
            raise side.error
    return [side.result for side in sides]
