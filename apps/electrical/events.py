"""What the electrical app tells the apps above it, without importing them (the layers in pyproject.toml).

``site_reading(schema_name, meter_key, reading)``: the site meter of a building reported its load (an
``apps.electrical.readings.Reading``). Called once the reading is committed, once per reading newly
stored (a replay calls nobody), in time order. The load balancer subscribes in its AppConfig.ready() to
rebalance at once when the headroom shrinks. A listener must be quick and must not raise; one that
raises is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apps.electrical.readings import Reading

logger = logging.getLogger(__name__)

SiteReadingListener = Callable[[str, str, Reading], None]
_site_reading: list[SiteReadingListener] = []


def on_site_reading(listener: SiteReadingListener) -> None:
    """Have ``listener(schema_name, meter_key, reading)`` called for each reading stored, after commit."""
    if listener not in _site_reading:
        _site_reading.append(listener)


def remove_site_reading_listener(listener: SiteReadingListener) -> None:
    if listener in _site_reading:
        _site_reading.remove(listener)


def site_reading(schema_name: str, meter_key: str, reading: Reading) -> None:
    for listener in list(_site_reading):
        try:
            listener(schema_name, meter_key, reading)
        except Exception:
            logger.exception("site reading listener %r failed", listener)
