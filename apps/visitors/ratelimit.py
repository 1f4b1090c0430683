"""Fixed-window request counts in Redis for the visitors' public pages (no login there).

    if over_limit("authorize", address=ip, code=code): return 429

Each named kind (the client's address, the connector's code, the visit) has its own limit per window; a request
is counted against every kind given and refused when any is past its limit. Shared by every web process.
"""

from __future__ import annotations

import time

from apps.core import live_store
from apps.core.failures import printable

WINDOW_S = 600
# action -> kind -> requests per window
LIMITS: dict[str, dict[str, int]] = {
    "page": {"address": 300, "code": 600},
    "authorize": {"address": 10, "code": 30},
    "start": {"address": 20, "visit": 10},
    "status": {"address": 1200, "visit": 600},
    "stop": {"address": 20, "visit": 10},
}


def over_limit(action: str, **values: str | None) -> bool:
    """Count this request; True when any of its kinds went past the action's limit in the current window."""
    client = live_store.sync_client()
    pipe = client.pipeline(transaction=False)
    kinds = []
    # The window's number is in the key, so a plain EXPIRE (any Redis; EXPIRE ... NX needs 7.0 and the embedded
    # server is 6.2) only has to outlive the window.
    window = int(time.time()) // WINDOW_S
    for kind, value in values.items():
        key = live_store.prefixed("visitors", f"rate:{action}:{kind}:{printable(value or '-')}:{window}")
        pipe.incr(key)
        pipe.expire(key, 2 * WINDOW_S)
        kinds.append(kind)
    counts = pipe.execute()[::2]
    limits = LIMITS[action]
    return any(count > limits[kind] for kind, count in zip(kinds, counts, strict=True))
