"""Who may open a browser websocket on a building's host (the console's and the residents' live views).

The page that opens the socket must be on the very host it connects to (``same_origin``; routing.py also checks
the Origin against ALLOWED_HOSTS), and the user's session must still exist and hold one of the roles asked for in
the building that host names (``member_of``). The consumers ask again every few seconds, so that a logout or a
lost role closes the socket.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.sessions.backends.db import SessionStore

from apps.accounts.selectors import condominium_roles
from apps.core.tenants import in_public_schema
from apps.tenancy.models import Condominium, Domain

logger = logging.getLogger(__name__)


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


def same_origin(scope: dict) -> str | None:
    """The host name when the page that opens the socket is on the very host it connects to; None otherwise."""
    host = _header(scope, b"host").strip().lower()
    origin = urlsplit(_header(scope, b"origin").strip().lower())
    if not host or origin.scheme not in ("http", "https") or origin.netloc != host:
        return None
    return host.rsplit(":", 1)[0] if not host.endswith("]") else host


def member_of(user, host: str, session_key: str | None, roles: frozenset[str]) -> Condominium | None:
    """The building of ``host`` when ``user`` (with a session still open) holds one of ``roles`` there."""
    if session_key is None or not SessionStore().exists(session_key):
        return None
    with in_public_schema():
        domain = Domain.objects.select_related("tenant").filter(domain=host).first()
        if domain is None or domain.tenant.schema_name == "public":
            return None
        condominium = domain.tenant
        return condominium if condominium_roles(user, condominium) & roles else None


class LiveViewConsumer(AsyncJsonWebsocketConsumer):
    """A read-only live view for the people of a building who hold one of ``roles``: refused at the handshake
    (403) for anyone else; once open, ``push`` runs until the socket closes, and ``still_allowed`` tells it
    whether the viewer may still see it (a logout or a lost role closes it with 4403)."""

    roles: frozenset[str] = frozenset()
    name = "live view"

    async def connect(self) -> None:
        self.task: asyncio.Task | None = None
        host = same_origin(self.scope)
        user = self.scope.get("user")
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        condominium = None
        if host is not None and getattr(user, "is_authenticated", False):
            condominium = await database_sync_to_async(member_of)(user, host, self.session_key, self.roles)
        if condominium is None:
            await self.close()  # before accept: the handshake is refused (403)
            return
        self.host, self.user, self.schema = host, user, condominium.schema_name
        await self.opened(condominium)
        await self.accept()
        self.task = asyncio.ensure_future(self._run())

    async def opened(self, condominium: Condominium) -> None:
        """What the view reads once, before it is accepted."""

    async def still_allowed(self) -> bool:
        return await database_sync_to_async(member_of)(self.user, self.host, self.session_key, self.roles) is not None

    async def disconnect(self, code: int) -> None:
        if getattr(self, "task", None) is not None:
            self.task.cancel()

    async def receive_json(self, content, **kwargs) -> None:
        return  # read-only: commands go through the pages' forms

    async def push(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        try:
            await self.push()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s of %s stopped", self.name, self.schema)
            await self.close(code=1011)
