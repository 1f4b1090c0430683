"""The resident's live view: a browser websocket at ``/ws/me/`` on the building's own host.

Who may open it: a resident of the building the host names, from a page of that host (apps/core/browser_sockets.py);
anyone else is refused at the handshake (403). Checked again every ``CONSOLE_RECHECK_S``: a logout closes it (4403).

What it sends: every ``CONSOLE_PUSH_MS``, when anything changed, the households' sessions under way
(apps/portal/cards.py ``as_json``): power, energy, cost so far, the limit and why. The chargers' state is one Redis
round trip; the database is read when a session starts or stops (every 5 s it looks), when a newer balancing run
exists, and at the permission check. The tariff of a session is read once; the cost so far is computed from it.
The page reloads itself when the set of sessions changes.
"""

from __future__ import annotations

import asyncio
import time

from django.conf import settings
from django.utils import timezone

from apps.accounts.selectors import RESIDENT
from apps.console.selectors import latest_run_id
from apps.core.browser_sockets import LiveViewConsumer
from apps.core.tenants import run_in_schema
from apps.ocpp import live
from apps.portal import cards, selectors

LOOK_S = 5.0  # how often the sessions under way and the latest balancing run are looked for
RESIDENTS = frozenset({RESIDENT})


class ResidentConsumer(LiveViewConsumer):
    roles = RESIDENTS
    name = "resident live view"

    async def opened(self, condominium) -> None:
        user = self.user
        self.resident_ids = await run_in_schema(self.schema, lambda: [r.pk for r in selectors.households(user)])
        self.locale = getattr(user, "preferred_language", "") or condominium.locale or "en"

    def _read_sessions(self) -> tuple[list[cards.SessionInfo], dict[int, cards.SessionPricing | None]]:
        sessions = selectors.open_sessions(self.resident_ids)
        return sessions, {s.session_pk: selectors.session_pricing(s.session_pk) for s in sessions}

    async def push(self) -> None:
        sessions, prices = await run_in_schema(self.schema, self._read_sessions)
        run_id = await run_in_schema(self.schema, latest_run_id)
        limits = await run_in_schema(self.schema, selectors.run_limits, run_id)
        sent: dict | None = None
        looked = recheck = time.monotonic()
        while True:
            clock = time.monotonic()
            if clock - looked >= LOOK_S:
                looked = clock
                found = await run_in_schema(self.schema, selectors.open_sessions, self.resident_ids)
                if [s.session_pk for s in found] != [s.session_pk for s in sessions] or any(
                        a.transaction_id != b.transaction_id for a, b in zip(found, sessions, strict=True)):
                    sessions, prices = await run_in_schema(self.schema, self._read_sessions)
                latest = await run_in_schema(self.schema, latest_run_id)
                if latest != run_id:
                    run_id, limits = latest, await run_in_schema(self.schema, selectors.run_limits, latest)
            if clock - recheck >= settings.CONSOLE_RECHECK_S:
                recheck = clock
                if not await self.still_allowed():
                    await self.close(code=4403)
                    return
            keys = [s.key for s in sessions]
            states = {cp: live.ChargerLive.from_state(cp, state)
                      for cp, state in (await live.read_many(sorted({k.rpartition("#")[0] for k in keys}))).items()}
            connectors = selectors.connector_states(keys, self.schema, states)
            now = timezone.now()
            shown = [cards.session_card(s, connectors.get(s.key), limits.get(s.key, {}), prices.get(s.session_pk),
                                        now=now) for s in sessions]
            wire = cards.as_json(shown, self.locale)
            if wire != sent:
                await self.send_json({"type": "update", **wire})
                sent = wire
            await asyncio.sleep(settings.CONSOLE_PUSH_MS / 1000)
