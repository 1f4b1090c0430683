"""What the buildings app tells the apps above it, without importing them (the layers in pyproject.toml).

``cards_changed()``: who may charge with which card has changed (a card added, blocked or given an
expiry, a resident moved out, an account overdue, suspended or restored), so the chargers' local
authorization lists must follow. apps.charging subscribes at start-up (apps/charging/apps.py) and asks,
on commit, for the lists to be synced.
"""

from __future__ import annotations

from collections.abc import Callable

_cards_changed: list[Callable[[], None]] = []


def on_cards_changed(listener: Callable[[], None]) -> None:
    """Have ``listener`` called at every change, inside the changing transaction and the building's schema."""
    if listener not in _cards_changed:
        _cards_changed.append(listener)


def cards_changed() -> None:
    for listener in _cards_changed:
        listener()
