"""Who may open a browser websocket on a building's host (the console's and the residents' live views).

The page that opens the socket must be on the very host it connects to (``same_origin``; routing.py also checks
the Origin against ALLOWED_HOSTS), and the user's session must still exist and hold one of the roles asked for in
the building that host names (``member_of``). The consumers ask again every few seconds, so that a logout or a
lost role closes the socket.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.sessions.backends.db import SessionStore

from apps.accounts.selectors import condominium_roles
from apps.core.tenants import in_public_schema
from apps.tenancy.models import Condominium, Domain


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
