"""Small helpers shared by tests of several apps. Fixtures live in conftest.py; test data in factories.py."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


def iso(dt: datetime) -> str:
    """A timestamp as OCPP-J carries it: UTC, with a Z."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wait_for(check: Callable[[], T], timeout: float = 15, *, interval: float = 0.05, what: str = "") -> T:
    """Call ``check`` until it returns something truthy, and return that; fail the test after ``timeout`` s.

    For things another thread or process does in its own time. Prefer it to a fixed sleep: it waits
    no longer than needed, and a condition that never comes true fails with a message, not a later assert.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or _name(check)} not true within {timeout} s (last: {result!r})")
        time.sleep(interval)


async def async_wait_for(
    check: Callable[[], T | Awaitable[T]], timeout: float = 15, *, interval: float = 0.05, what: str = ""
) -> T:
    """``wait_for`` for async tests: ``check`` may be a plain or a coroutine function; the loop keeps running."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if loop.time() >= deadline:
            raise AssertionError(f"{what or _name(check)} not true within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


def _name(check: Callable) -> str:
    name = getattr(check, "__name__", "the condition")
    return "the condition" if name == "<lambda>" else name
