"""A payload's keys between OCPP's camelCase and the handlers' snake_case, the ocpp package's way. No Django.

The ocpp package converts every key of every payload with regular expressions, for every message (6 % of
the event loop in steady state, docs/benchmarks.md runs Z). The conversion of one key never changes, so it
is done once per key by the package's own functions and remembered. The number of keys remembered is
bounded: a charger may send keys no schema has (they are refused by the validation that comes first, but
a bound costs nothing).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case

KEYS_REMEMBERED = 4096


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def snake_key(key: str) -> str:
    return str(next(iter(camel_to_snake_case({key: None}))))


@functools.lru_cache(maxsize=KEYS_REMEMBERED)
def camel_key(key: str) -> str:
    return str(next(iter(snake_to_camel_case({key: None}))))


def _with_keys(data: Any, convert: Callable[[str], str]) -> Any:
    if isinstance(data, dict):
        return {convert(key): _with_keys(value, convert) for key, value in data.items()}
    if isinstance(data, list):
        return [_with_keys(value, convert) for value in data]
    return data


def to_snake(data: Any) -> Any:
    """``camel_to_snake_case(data)``: the same result, each key converted once per process."""
    return _with_keys(data, snake_key)


def to_camel(data: Any) -> Any:
    """``snake_to_camel_case(data)``: the same result, each key converted once per process."""
    return _with_keys(data, camel_key)


def response_payload(response: Any) -> dict[str, Any]:
    """A handler's answer (a call_result dataclass) as the CALLRESULT's payload, as the ocpp package makes it."""
    payload: dict[str, Any] = to_camel(remove_nones(serialize_as_dict(response)))
    return payload
