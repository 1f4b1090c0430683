"""When a building is rebalanced: at once on what changes the headroom, debounced, one run at a time.

A reading from the site meter, a session starting or stopping, a status or connection change each ask for
a run once their transaction commits (``request``). A request sets the building's *pending* mark in Redis;
only the request that set it queues a Celery task, so a burst of readings queues one run. The task takes
the building's lock (one run at a time, on any worker), clears the mark, runs, and runs again if a request
came in meanwhile. The beat task ``rebalance_all`` refreshes every building periodically: the leases are
renewed and nothing is missed if a request was lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction

from apps.core import live_store

log = logging.getLogger(__name__)

PENDING_MS = 10_000  # a queued run that never ran (a lost task) stops holding back new requests after this
LOCK_MS = 30_000  # a run that died holding the lock stops holding back the building after this
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Queues a run of a building (schema name, why); the tasks module sets it (tests may call ``run`` directly).
Queue = Callable[[str, str], None]
_queue: Queue | None = None


def set_queue(queue: Queue) -> None:
    global _queue
    _queue = queue


def _pending(schema: str) -> str:
    return live_store.prefixed("lb", f"pending:{schema}")


def _lock(schema: str) -> str:
    return live_store.prefixed("lb", f"lock:{schema}")


def request_now(schema: str, why: str) -> bool:
    """Ask for a run of the building; True when this request queued it (False: one is already queued, or the
    balancer is off)."""
    if not settings.LOADBALANCING_ENABLED:
        return False
    redis = live_store.sync_client()
    if not redis.set(_pending(schema), why[:200], nx=True, px=PENDING_MS):
        return False
    if not _queue_run(schema, why):
        redis.delete(_pending(schema))
        return False
    return True


def request(why: str) -> None:
    """From inside a building's transaction: ask for a run once it commits."""
    schema = connection.schema_name
    transaction.on_commit(lambda: request_now(schema, why), robust=True)


def run(schema: str, why: str, body: Callable[[str], object], rounds: int = 3) -> int:
    """Run ``body(why)`` under the building's lock, again while requests came in meanwhile; how many runs.
    0: another worker holds the lock (it will see the pending mark and run again).

    After ``rounds`` runs (so that one busy building does not keep a worker from the others), a request
    still pending is queued again: the task it queued itself found the lock taken and left it to this run,
    so without that nobody would run it, and the mark would swallow every request until it expires."""
    redis = live_store.sync_client()
    token = uuid.uuid4().hex
    done = 0
    for _ in range(rounds):
        if not redis.set(_lock(schema), token, nx=True, px=LOCK_MS):
            return done
        try:
            queued_why = redis.getdel(_pending(schema))
            if done and queued_why is None:
                break
            body(queued_why or why)
            done += 1
        finally:
            redis.eval(_RELEASE, 1, _lock(schema), token)
        if not redis.exists(_pending(schema)):
            break
    else:
        still = redis.get(_pending(schema))
        if still is not None:
            _queue_run(schema, still)  # the mark left behind stands for this task now
    return done


def _queue_run(schema: str, why: str) -> bool:
    """Queue a run task; False (logged) when the broker refused it: the periodic run will do it."""
    if _queue is None:
        from apps.loadbalancing import tasks  # noqa: F401  (sets the queue)
    try:
        _queue(schema, why)  # type: ignore[misc]
    except Exception:
        log.exception("could not queue a balancing run of %s (%s); the periodic run will do it", schema, why)
        return False
    return True


# --- the listeners (apps/loadbalancing/apps.py registers them) ---------------------------------


def site_reading(schema_name: str, meter_key: str, reading) -> None:
    request_now(schema_name, f"site meter {meter_key}")


def load_changed(why: str) -> None:
    request(why)


def session_stopped(session_pk: int) -> None:
    request(f"session {session_pk} stopped")
