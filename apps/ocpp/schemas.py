"""OCPP 1.6 JSON schema validation with a fast path. No Django.

The verdict is the ocpp package's: its JSON schemas, checked with jsonschema (Draft 4, no format checks),
and its mapping of a failure to an OCPP-J error code and message. jsonschema interprets each schema anew
for every payload (about 280 us for a MeterValues on the benchmark machine, 10 % of the event loop in
steady state, docs/benchmarks.md runs Z), so a payload is first checked against the same schema compiled to
Python code by fastjsonschema (about 13 us), and

- passes when the compiled schema accepts it;
- otherwise goes to the ocpp package's validation, which raises the error a charger gets, word for word as
  before. A payload the compiled schema refuses and jsonschema accepts (any difference between the two
  Draft 4 implementations) passes: only "valid" is ever answered by the fast path, never an error.

The three schemas the ocpp package reads with decimal floats (a 0.1 ``multipleOf`` that binary floats fail)
always take the package's path. tests/ocpp/test_schemas.py checks that the fast path accepts nothing
jsonschema refuses, on thousands of mutated payloads of every action.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp.messages
from ocpp.messages import Call, CallResult, MessageType

OCPP_VERSION = "1.6"
SCHEMAS = Path(ocpp.messages.__file__).parent / "v16" / "schemas"
# Validation is quick; the package's option of running it in a thread pool costs more than it saves.
ocpp.messages.ASYNC_VALIDATION = False
# The ocpp package validates these with decimal floats (ocpp.messages._validate_payload).
DECIMAL_SCHEMAS = frozenset({(MessageType.Call, "SetChargingProfile"), (MessageType.Call, "RemoteStartTransaction"),
                             (MessageType.CallResult, "GetCompositeSchedule")})


def schema_name(message_type_id: int, action: str) -> str:
    return action + "Response" if message_type_id == MessageType.CallResult else action


@functools.cache
def compiled(message_type_id: int, action: str) -> Callable[[Any], Any] | None:
    """The schema of ``action`` (its CALL or its CALLRESULT) compiled; None where the fast path does not apply."""
    if (message_type_id, action) in DECIMAL_SCHEMAS:
        return None
    path = SCHEMAS / f"{schema_name(message_type_id, action)}.json"
    if not path.is_file():  # an unknown action: the package raises its own error for it
        return None
    # Draft 4 as the package reads it: formats (date-time, uri) are not checked there either.
    return fastjsonschema.compile(json.loads(path.read_text(encoding="utf-8-sig")), use_formats=False)


def fast_accepts(message: Call | CallResult) -> bool:
    """Whether the compiled schema accepts the payload (False also where there is no compiled schema)."""
    check = compiled(message.message_type_id, message.action)
    if check is None:
        return False
    try:
        check(message.payload)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


async def validate(message: Call | CallResult) -> None:
    """Return when the payload is valid OCPP 1.6; raise the ocpp package's OCPPError when it is not."""
    if not fast_accepts(message):
        await ocpp.messages.validate_payload(message, OCPP_VERSION)
