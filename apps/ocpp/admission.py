"""Admission control: a process that is saturated sheds load early and cheaply. Pure: no Django, no I/O, no clock
(the caller passes the monotonic time).

After a restart every charger reconnects at once. Work accepted beyond what the process can finish before
the chargers give up (30 s) is wasted twice: the charger times out, reconnects and costs it all again, and
the backlog feeds itself (a congestion collapse). Work refused that the process could have finished in time
is wasted too: a refused charger backs off (its own back-off, up to 30 s and more), so a storm's last
chargers wait long after the process has gone idle. So the bound is on time, measured, not on a count
guessed for one machine:

- a gate counts the work in progress (handshakes; boots, from BootNotification until the configuration
  after it is done) and measures its rate: places freed per second over the last ``RATE_WINDOW_S``;
- it takes one more while fewer than ``limit`` are in progress (the first wave, before anything is
  measured, and the floor on a slow machine), or, once the rate is known, while what is in progress would
  be finished within ``budget_s`` at that rate (``in_progress < rate x budget_s``), up to ``ceiling``;
- a handshake beyond that is refused at once (HTTP 403, no database, no Redis, nothing recorded) and the
  charger retries later, as chargers do;
- a boot beyond that is answered Pending with an interval, OCPP's own way to say "come back later": the
  charger stays connected and sends BootNotification again after it. The interval is an appointment: the
  time the work in progress takes to finish at the measured rate, plus a place in the queue of those told
  to come back before, so that they return at the rate the process finishes them, not all together at the
  end of a fixed interval (and not later than they need to). Before any rate is measured, a jittered
  ``PENDING_INTERVAL_S``. One that comes back after its appointment is taken (up to the ceiling) rather
  than told to wait again behind the newcomers.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque

PENDING_INTERVAL_S = (10, 30)  # before any rate is measured: jittered, so the retries do not arrive together
PENDING_MIN_S = 2  # an appointment is never sooner: the charger's own round trip and boot
PENDING_MAX_S = 60
RATE_WINDOW_S = 5.0  # places freed over this long make the rate
CEILING_FACTOR = 5
RATE_MIN_SAMPLES = 20  # fewer than this in the window: no rate (a quiet process, or the first instants of a storm)
RATE_MIN_SPAN_S = 0.5  # a rate is never taken from a shorter span than this


class Gate:
    """Work in progress in this process (one event loop), its rate, and how often it refused."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.in_progress = 0
        self.refused = 0
        self.window_s = window_s
        self._freed: deque[float] = deque()  # when places were freed, within the window
        self._appointments: list[float] = []  # when those told to come back are due (a heap)

    def enter(self, limit: int, now: float, *, budget_s: float = 0.0, ceiling: int | None = None,
              appointment: bool = False) -> bool:
        """Take a place; False (nothing taken) when the process is saturated (see the module). One that comes
        back at the appointment it was given (``appointment``) is taken up to the ceiling: appointments are
        spread at the rate the process finishes its work, and one refused again for the newcomers that
        arrived meanwhile would be pushed back again and again."""
        bound = (_ceiling(limit, ceiling) if appointment
                 else self.allowed(limit, now, budget_s=budget_s, ceiling=ceiling))
        if self.in_progress >= bound:
            self.refused += 1
            return False
        self.in_progress += 1
        return True

    def allowed(self, limit: int, now: float, *, budget_s: float = 0.0, ceiling: int | None = None) -> int:
        """How many may be in progress now: ``limit``, or more where the measured rate finishes them within
        ``budget_s``, up to ``ceiling`` (CEILING_FACTOR x ``limit`` by default: memory is finite)."""
        rate = self.rate(now)
        if rate is None or budget_s <= 0:
            return limit
        return max(limit, min(int(rate * budget_s), _ceiling(limit, ceiling)))

    def leave(self, now: float) -> None:
        self.in_progress = max(0, self.in_progress - 1)
        self._freed.append(now)
        self._trim(now)

    def rate(self, now: float) -> float | None:
        """Places freed per second over the last window (over the time since the first of them, when the work
        began within the window: a storm's first second); None while too few to tell."""
        self._trim(now)
        if len(self._freed) < RATE_MIN_SAMPLES:
            return None
        return len(self._freed) / min(self.window_s, max(now - self._freed[0], RATE_MIN_SPAN_S))

    def appointment(self, now: float, rng: random.Random) -> int:
        """Seconds before one told to come back should: once the work in progress and those told before it
        are done at the measured rate, within PENDING_MIN_S..PENDING_MAX_S; jittered PENDING_INTERVAL_S while
        no rate is measured."""
        rate = self.rate(now)
        if rate is None:
            return rng.randint(*PENDING_INTERVAL_S)
        while self._appointments and self._appointments[0] <= now:
            heapq.heappop(self._appointments)  # come back (or gone): no longer ahead in the queue
        wait = min(max(math.ceil((self.in_progress + len(self._appointments)) / rate), PENDING_MIN_S),
                   PENDING_MAX_S)
        heapq.heappush(self._appointments, now + wait)
        return wait

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._freed and self._freed[0] < horizon:
            self._freed.popleft()


def _ceiling(limit: int, ceiling: int | None) -> int:
    return CEILING_FACTOR * limit if ceiling is None else ceiling


handshakes = Gate()
boots = Gate()
