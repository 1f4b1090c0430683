"""Carry a login from the company site to a building's own site.

Sessions are per host name, so a manager who logged in on the company site
would have to log in again on every building's address. Instead, the company
site signs a short-lived, single-use ticket naming the person and the building,
and the building's site exchanges it for a session there, after checking again
that the person holds a role in that building.
"""

from __future__ import annotations

import secrets

from django.core import signing
from django.core.cache import cache

from apps.core.tenants import in_public_schema

SALT = "apps.accounts.handoff"
MAX_AGE_S = 60


def issue_ticket(user_id: int, condominium_id: int) -> str:
    nonce = secrets.token_urlsafe(16)
    with in_public_schema():  # cache keys carry the schema name
        cache.set(f"handoff:{nonce}", 1, timeout=MAX_AGE_S)
    return signing.dumps({"u": user_id, "c": condominium_id, "n": nonce}, salt=SALT)


def redeem_ticket(ticket: str, condominium_id: int) -> int | None:
    """The user id the ticket was issued to, once; None if forged, expired, used or for another building."""
    try:
        data = signing.loads(ticket, salt=SALT, max_age=MAX_AGE_S)
    except signing.BadSignature:
        return None
    if data.get("c") != condominium_id:
        return None
    with in_public_schema():
        if not cache.delete(f"handoff:{data.get('n')}"):
            return None  # already used (or expired from the cache)
    return int(data["u"])
