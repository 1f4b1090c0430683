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
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from apps.accounts.selectors import RESIDENT
from apps.core.browser_sockets import member_of, same_origin
from apps.core.tenants import run_in_schema
from apps.ocpp import live
from apps.portal import cards, selectors

logger = logging.getLogger(__name__)

LOOK_S = 5.0  # how often the sessions under way and the latest balancing run are looked for
RESIDENTS = frozenset({RESIDENT})


class ResidentConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.task: asyncio.Task | None = None
        host = same_origin(self.scope)
        user = self.scope.get("user")
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        condominium = None
        if host is not None and getattr(user, "is_authenticated", False):
            condominium = await database_sync_to_async(member_of)(user, host, self.session_key, RESIDENTS)
        if condominium is None:
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.host, self.user, self.schema = host, user, condominium.schema_name
        self.resident_ids = await run_in_schema(self.schema, lambda: [r.pk for r in selectors.households(user)])
        await self.accept()
        self.task = asyncio.ensure_future(self.push())

    async def disconnect(self, code: int) -> None:
        if getattr(self, "task", None) is not None:
            self.task.cancel()

    async def receive_json(self, content, **kwargs) -> None:
        return  # read-only: starting and stopping go through the pages' forms

    async def push(self) -> None:
        try:
            await self._push()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("resident live view in %s: stopped", self.schema)
            await self.close(code=1011)

    def _read_sessions(self) -> tuple[list[cards.SessionInfo], dict[int, cards.SessionPricing | None]]:
        sessions = selectors.open_sessions(self.resident_ids)
        return sessions, {s.session_pk: selectors.session_pricing(s.session_pk) for s in sessions}

    async def _push(self) -> None:
        sessions, prices = await run_in_schema(self.schema, self._read_sessions)
        run_id = await run_in_schema(self.schema, selectors.latest_run_id)
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
                latest = await run_in_schema(self.schema, selectors.latest_run_id)
                if latest != run_id:
                    run_id, limits = latest, await run_in_schema(self.schema, selectors.run_limits, latest)
            if clock - recheck >= settings.CONSOLE_RECHECK_S:
                recheck = clock
                if await database_sync_to_async(member_of)(self.user, self.host, self.session_key, RESIDENTS) is None:
                    await self.close(code=4403)
                    return
            keys = [s.key for s in sessions]
            states = {cp: live.ChargerLive.from_state(cp, state)
                      for cp, state in (await live.read_many(sorted({k.rpartition("#")[0] for k in keys}))).items()}
            connectors = selectors.connector_states(keys, self.schema, states)
            now = timezone.now()
            wire = cards.as_json([cards.session_card(s, connectors.get(s.key), limits.get(s.key, {}),
                                                     prices.get(s.session_pk), now=now) for s in sessions])
            if wire != sent:
                await self.send_json({"type": "update", **wire})
                sent = wire
            await asyncio.sleep(settings.CONSOLE_PUSH_MS / 1000)
