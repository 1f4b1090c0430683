"""The building console's live view: a browser websocket at ``/ws/console/`` on a building's own host.

Who may open it: a manager or board member of the building the host names (the session cookie, as for the
pages), from a page of that same host (the Origin must be the host itself; routing.py also checks it against
ALLOWED_HOSTS). Anyone else is refused at the handshake (403), and learns nothing. The permission is checked
again every ``CONSOLE_RECHECK_S`` seconds: a viewer who logged out or lost the role is disconnected.

What it sends: first the whole picture, then, every ``CONSOLE_PUSH_MS``, only what changed
(apps/console/board.py ``changes``). Each push reads the chargers' live state in one Redis round trip; the
database is read only when a session starts or stops (a connector's transaction id changes in the live state),
every 5 s to see whether a newer balancing run exists (one small query), and at each permission check.
The client sends nothing; anything it sends is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from zoneinfo import ZoneInfo

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.accounts.selectors import BOARD, MANAGER
from apps.console import board, selectors
from apps.core.browser_sockets import member_of, same_origin
from apps.core.tenants import run_in_schema
from apps.ocpp import live
from apps.tenancy.models import Condominium

logger = logging.getLogger(__name__)

RUN_CHECK_S = 5.0
VIEWERS = frozenset({MANAGER, BOARD})


def _viewer_of(user, host: str, session_key: str | None) -> Condominium | None:
    return member_of(user, host, session_key, VIEWERS)


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.task: asyncio.Task | None = None
        host = same_origin(self.scope)
        user = self.scope.get("user")
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        condominium = None
        if host is not None and getattr(user, "is_authenticated", False):
            condominium = await database_sync_to_async(_viewer_of)(user, host, self.session_key)
        if condominium is None:
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.host, self.user, self.schema = host, user, condominium.schema_name
        self.zone = ZoneInfo(condominium.timezone)  # times go out in the building's own time
        await self.accept()
        self.task = asyncio.ensure_future(self.push())

    async def disconnect(self, code: int) -> None:
        if getattr(self, "task", None) is not None:
            self.task.cancel()

    async def receive_json(self, content, **kwargs) -> None:
        return  # read-only: the console's commands go through the pages' forms

    async def push(self) -> None:
        try:
            await self._push()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("console of %s: the live view stopped", self.schema)
            await self.close(code=1011)

    async def _push(self) -> None:
        built, run = await run_in_schema(self.schema, lambda: (selectors.structure(), selectors.run_info(
            zone=self.zone)))
        sent: dict | None = None
        transactions: dict[str, int | None] | None = None
        run_checked = recheck = time.monotonic()
        while True:
            states = {cp: live.ChargerLive.from_state(cp, state)
                      for cp, state in (await live.read_many(built.charge_point_ids)).items()}
            now = selectors.connectors_now(states, self.schema, built.connectors)
            seen = {key: state.transaction_id for key, state in now.items()}
            if transactions is not None and seen != transactions:  # a session started or stopped
                built = await run_in_schema(self.schema, selectors.structure)
            transactions = seen
            clock = time.monotonic()
            if clock - run_checked >= RUN_CHECK_S:
                run_checked = clock
                latest = await run_in_schema(self.schema, selectors.latest_run_id)
                if latest != (run.run_id if run is not None else None):
                    run = await run_in_schema(self.schema, selectors.run_info, latest, zone=self.zone)
            if clock - recheck >= settings.CONSOLE_RECHECK_S:
                recheck = clock
                if await database_sync_to_async(_viewer_of)(self.user, self.host, self.session_key) is None:
                    await self.close(code=4403)
                    return
            wire = board.as_json(board.picture(built.circuits, built.connectors, now, built.sessions, run))
            delta = board.changes(sent, wire)
            if delta:
                await self.send_json({"type": "update", **delta})
                sent = wire
            await asyncio.sleep(settings.CONSOLE_PUSH_MS / 1000)

