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
import time
from zoneinfo import ZoneInfo

from django.conf import settings

from apps.accounts.selectors import BOARD, MANAGER
from apps.console import board, selectors
from apps.core.browser_sockets import LiveViewConsumer
from apps.core.tenants import run_in_schema
from apps.ocpp import live
from apps.tenancy.models import Condominium

RUN_CHECK_S = 5.0
VIEWERS = frozenset({MANAGER, BOARD})


class ConsoleConsumer(LiveViewConsumer):
    roles = VIEWERS
    name = "console live view"

    async def opened(self, condominium: Condominium) -> None:
        self.zone = ZoneInfo(condominium.timezone)  # times go out in the building's own time

    async def push(self) -> None:
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
                if not await self.still_allowed():
                    await self.close(code=4403)
                    return
            wire = board.as_json(board.picture(built.circuits, built.connectors, now, built.sessions, run))
            delta = board.changes(sent, wire)
            if delta:
                await self.send_json({"type": "update", **delta})
                sent = wire
            await asyncio.sleep(settings.CONSOLE_PUSH_MS / 1000)

