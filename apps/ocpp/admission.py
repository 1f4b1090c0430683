"""Admission control: a process that is saturated sheds load early and cheaply. Pure: no Django, no I/O.

After a restart every charger reconnects at once. Work accepted beyond what the process can finish before
the chargers give up (30 s) is wasted twice: the charger times out, reconnects and costs it all again, and
the backlog feeds itself (a congestion collapse). So:

- at most ``limit`` handshakes are in progress at once; one more is refused at once (HTTP 403, no database,
  no Redis, nothing recorded) and the charger retries later, as chargers do;
- at most ``limit`` boots (BootNotification until the configuration after it is done) are in progress;
  one more is answered Pending with a jittered interval, OCPP's own way to say "come back later": the
  charger stays connected and sends BootNotification again after the interval.
"""

from __future__ import annotations

import random

PENDING_INTERVAL_S = (10, 30)


class Gate:
    """Work in progress in this process (one event loop), and how often it refused."""

    def __init__(self) -> None:
        self.in_progress = 0
        self.refused = 0

    def enter(self, limit: int) -> bool:
        """Take a place; False (nothing taken) when ``limit`` are already in progress."""
        if self.in_progress >= limit:
            self.refused += 1
            return False
        self.in_progress += 1
        return True

    def leave(self) -> None:
        self.in_progress = max(0, self.in_progress - 1)


def pending_interval(rng: random.Random) -> int:
    """Seconds before a charger told Pending boots again: jittered, so that the retries do not arrive together."""
    return rng.randint(*PENDING_INTERVAL_S)


handshakes = Gate()
boots = Gate()
