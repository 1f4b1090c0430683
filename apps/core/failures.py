"""Failed credentials counted in Redis, shared by every process: charger passwords, site-meter tokens.

A counter has kinds (the credential's id, the remote address...), each with its limit. Past its limit
for a kind and value, attempts are refused without checking, for a back-off that doubles with each
further failure, from FIRST_BACKOFF_S up to MAX_BACKOFF_S. Counts are forgotten FORGET_AFTER_S after the
last failure; a right credential clears the id's count (``clear``).

    counter = FailureCounter("meter", lambda: {"meter": 5, "address": 50})
    if counter.locked_sync(meter="main", address="203.0.113.7"): ...   # refuse unchecked
    counter.record_sync(meter="main", address="203.0.113.7")             # after a failure

Async methods (for consumers) and sync ones (for views and tasks) share the same keys.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apps.core import live_store

logger = logging.getLogger(__name__)


def printable(text: str, limit: int = 64) -> str:
    """A value as it can be part of a key: escapes for what is not printable, at most ``limit``."""
    return text.encode("unicode_escape").decode("ascii")[:limit]


class FailureCounter:
    FORGET_AFTER_S = 3600
    FIRST_BACKOFF_S = 60
    MAX_BACKOFF_S = 3600

    def __init__(self, area: str, limits: Callable[[], dict[str, int]], label: str = "credential"):
        self.area = area
        self.limits = limits  # read at each failure, so that settings changed in tests apply
        self.label = label

    def _keys(self, kind: str, value: str) -> tuple[str, str]:
        base = live_store.prefixed(self.area, f"auth-failures:{kind}:{printable(value.lower())}")
        return base + ":count", base + ":locked"

    def lock_keys(self, **values: str) -> list[str]:
        return [self._keys(kind, value)[1] for kind, value in values.items()]

    def _backoff(self, count: int, limit: int) -> int | None:
        if count < limit:
            return None
        return min(self.FIRST_BACKOFF_S * 2 ** min(count - limit, 10), self.MAX_BACKOFF_S)

    def _locked(self, kind: str, value: str, count: int, backoff: int) -> None:
        logger.warning("%s failures: %s %r locked for %s s after %s", self.label, kind, value, backoff, count)

    # --- async ---------------------------------------------------------------------------

    async def locked(self, **values: str) -> bool:
        return any(await live_store.client().mget(self.lock_keys(**values)))

    async def record(self, **values: str) -> None:
        limits = self.limits()
        for kind, value in values.items():
            count_key, lock_key = self._keys(kind, value)
            pipe = live_store.client().pipeline(transaction=False)
            pipe.incr(count_key)
            pipe.expire(count_key, self.FORGET_AFTER_S)
            count = (await pipe.execute())[0]
            backoff = self._backoff(count, limits[kind])
            if backoff is not None:
                await live_store.client().set(lock_key, count, ex=backoff)
                self._locked(kind, value, count, backoff)

    async def clear(self, kind: str, value: str) -> None:
        await live_store.client().delete(self._keys(kind, value)[0])

    # --- sync ----------------------------------------------------------------------------

    def locked_sync(self, **values: str) -> bool:
        return any(live_store.sync_client().mget(self.lock_keys(**values)))

    def record_sync(self, **values: str) -> None:
        limits = self.limits()
        client = live_store.sync_client()
        for kind, value in values.items():
            count_key, lock_key = self._keys(kind, value)
            pipe = client.pipeline(transaction=False)
            pipe.incr(count_key)
            pipe.expire(count_key, self.FORGET_AFTER_S)
            count = pipe.execute()[0]
            backoff = self._backoff(count, limits[kind])
            if backoff is not None:
                client.set(lock_key, count, ex=backoff)
                self._locked(kind, value, count, backoff)

    def clear_sync(self, kind: str, value: str) -> None:
        live_store.sync_client().delete(self._keys(kind, value)[0])
