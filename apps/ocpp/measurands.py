"""What metering the platform asks a charger for after its boot. Pure: configuration in, changes out; no I/O.

Billing needs the energy register, the load balancer the current per phase and the power. After every
accepted boot the consumer reads the configuration (GetConfiguration), asks ``metering_changes`` what to
change, sends each change's choices in order with ChangeConfiguration until one is Accepted, and stores
``configuration_after`` what was accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

SAMPLED_DATA_KEY = "MeterValuesSampledData"
SAMPLE_INTERVAL_KEY = "MeterValueSampleInterval"
WANTED_MEASURANDS = ("Energy.Active.Import.Register", "Current.Import", "Power.Active.Import")
# Some chargers take only a few measurands: the register and the currents matter most.
FALLBACK_MEASURANDS = ("Energy.Active.Import.Register", "Current.Import")

# key -> {"value": ..., "readonly": ...}, as GetConfiguration answered it
Configuration = Mapping[str, Mapping[str, Any]]


@dataclass(frozen=True)
class ConfigurationChange:
    """A ChangeConfiguration to send: ``choices`` in order, the next one only when the charger refuses the last."""

    key: str
    choices: tuple[str, ...]


def metering_changes(configuration: Configuration, *, sample_interval_s: int) -> list[ConfigurationChange]:
    """The changes that give the platform the measurands it needs every ``sample_interval_s`` seconds."""
    changes = []
    sampled = str(_value(configuration, SAMPLED_DATA_KEY) or "")
    if not set(WANTED_MEASURANDS) <= {measurand.strip() for measurand in sampled.split(",")}:
        changes.append(ConfigurationChange(SAMPLED_DATA_KEY, (",".join(WANTED_MEASURANDS),
                                                              ",".join(FALLBACK_MEASURANDS))))
    interval = str(sample_interval_s)
    if str(_value(configuration, SAMPLE_INTERVAL_KEY)) != interval:
        changes.append(ConfigurationChange(SAMPLE_INTERVAL_KEY, (interval,)))
    return changes


def needs_reading(configuration: Configuration, *, read_at: datetime | None, now: datetime,
                  sample_interval_s: int, max_age: timedelta) -> bool:
    """Whether a boot must read the charger's configuration again (GetConfiguration, then the changes).

    Not when it was read lately and already gives the metering wanted: after a restart of the platform
    thousands of chargers boot at once, and three calls and a write each are what a storm cannot afford.
    A charger whose configuration was changed behind the platform's back is read again within ``max_age``.
    """
    if read_at is None or now - read_at > max_age:
        return True
    return bool(metering_changes(configuration, sample_interval_s=sample_interval_s))


def configuration_after(configuration: Configuration, accepted: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The configuration with the values the charger accepted (a key it did not report becomes writable)."""
    result = {key: dict(entry) for key, entry in configuration.items()}
    for key, value in accepted.items():
        result[key] = {**result.get(key, {"readonly": False}), "value": value}
    return result


def sample_interval_s(configuration: Configuration) -> int | None:
    """The charger's MeterValueSampleInterval as it reported it (None: not known, not a number, or 0: none)."""
    value = _value(configuration, SAMPLE_INTERVAL_KEY)
    try:
        seconds = int(str(value).strip())
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _value(configuration: Configuration, key: str) -> Any:
    return (configuration.get(key) or {}).get("value")
