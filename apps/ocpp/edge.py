"""What a charger may send, beyond the OCPP 1.6 JSON schemas. Pure: no Django, no I/O.

The schemas check types, enumerations and string lengths. They let through what the
database refuses and what the spec forbids in prose, and a charger that sends it must get
an answer that names the field, never InternalError:

- strings with a NUL character or an unpaired surrogate (PostgreSQL stores neither);
- integers beyond 32 bits: OCPP 1.6's ``integer`` is a 32-bit signed integer
  (section 2.4 of the specification), and a transactionId of 2^53 fits no column;
- a negative or absurdly large connectorId, and StartTransaction on connector 0 (the charger itself).

``check`` returns the first problem as (error code, description), or None.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# No charger has a thousand connectors; the columns that keep the number are small integers.
MAX_CONNECTOR_ID = 999

PROPERTY = "PropertyConstraintViolation"
TYPE = "TypeConstraintViolation"

def check(action: str, payload: dict[str, Any]) -> tuple[str, str] | None:
    """The first value of ``payload`` the platform cannot take, as (OCPP-J error code, description)."""
    for path, value in _leaves(payload, ""):
        if isinstance(value, str):
            if "\x00" in value:
                return PROPERTY, f"{path} contains a NUL character"
            if not _is_utf8(value):
                return PROPERTY, f"{path} is not valid Unicode (an unpaired surrogate)"
        elif isinstance(value, int) and not isinstance(value, bool) and not INT32_MIN <= value <= INT32_MAX:
            return TYPE, f"{path} is {value}, beyond OCPP's 32-bit integer"
    connector = payload.get("connectorId")
    if isinstance(connector, int) and not isinstance(connector, bool):
        if connector < 0:
            return PROPERTY, f"connectorId is {connector}; connectors are numbered from 1 (0 is the charger)"
        if connector > MAX_CONNECTOR_ID:
            return PROPERTY, f"connectorId is {connector}; at most {MAX_CONNECTOR_ID} connectors are supported"
        if connector == 0 and action == "StartTransaction":
            return PROPERTY, "connectorId is 0; a transaction runs on a connector, numbered from 1"
    return None


def _leaves(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and ("\x00" in key or not _is_utf8(key)):
                yield f"{path or 'payload'} key", key
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path or "payload", value


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TokenBucket:
    """``burst`` events at once, then ``rate`` per second. Time is an argument."""

    def __init__(self, rate: float, burst: int, now: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = float(burst), now

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self, now: float) -> bool:
        """Spend one token; False (nothing spent) when there is none left."""
        self._refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def wait(self, now: float) -> float:
        """Spend one token, borrowing ahead if need be: the seconds to wait before the event may happen."""
        self._refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
