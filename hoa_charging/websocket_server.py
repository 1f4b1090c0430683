"""The websocket server under daphne (autobahn): what we change of it, in one place.

autobahn formats its protocol options with ``pprint.pformat`` for a debug line at every new connection,
whether or not debug logging is on (``self.log.debug("\\n{attrs}", attrs=pformat(...))``): in a reconnect
storm of 2,000 chargers that was 3 % of the event loop's time (docs/benchmarks.md, runs Z). txaio formats a
log line's arguments only when the line is emitted, so handing it a value that formats itself on demand
keeps every debug line as it was and costs nothing when debug logging is off.

``apply()`` runs where the application is loaded (hoa_charging/asgi.py); it is idempotent.
"""

from __future__ import annotations

import pprint
import sys
from typing import Any


class LazyPformat:
    """``pprint.pformat(value)``, computed when (and each time) the value is formatted into a string."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __str__(self) -> str:
        return pprint.pformat(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    __repr__ = __str__


def apply() -> None:
    """Patch autobahn where it is loaded (daphne loads it before the application); elsewhere (tests, workers)
    import nothing: importing autobahn sets up txaio's framework for the whole process."""
    protocol = sys.modules.get("autobahn.websocket.protocol")
    if protocol is not None:
        protocol.pformat = LazyPformat  # the module's own name for pprint.pformat
