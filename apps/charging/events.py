"""What the charging app tells the apps above it, without importing them (the layers in pyproject.toml).

``session_stopped(session_pk)``: a session has just ended (StopTransaction, or closed by the platform)
and its energy is final. apps.billing subscribes at start-up (apps/billing/apps.py) and prices the
session once the transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable

_session_stopped: list[Callable[[int], None]] = []


def on_session_stopped(listener: Callable[[int], None]) -> None:
    """Have ``listener(session_pk)`` called at every stop, inside the stopping transaction and the building's schema."""
    if listener not in _session_stopped:
        _session_stopped.append(listener)


def session_stopped(session_pk: int) -> None:
    for listener in _session_stopped:
        listener(session_pk)


# ``load_changed(why)``: what the chargers may draw has changed (a session started, a connector's status or a
# charger's connection changed). apps.loadbalancing subscribes (apps/loadbalancing/apps.py) and rebalances
# the building once the transaction commits.
_load_changed: list[Callable[[str], None]] = []


def on_load_changed(listener: Callable[[str], None]) -> None:
    """Have ``listener(why)`` called inside the changing transaction and the building's schema."""
    if listener not in _load_changed:
        _load_changed.append(listener)


def load_changed(why: str) -> None:
    for listener in _load_changed:
        listener(why)
