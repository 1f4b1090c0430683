"""Site-meter bearer tokens: stored as a plain SHA-256, since one is checked on every push.

A token is a generated secret (8+ characters, commissioning), not a password people choose, so a slow
hash buys nothing and would cost every push. Compared in constant time; a push for an unknown meter is
compared against a dummy hash, so that the time taken does not tell which meter ids exist.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256$"
DUMMY_HASH = PREFIX + "0" * 64


def hash_meter_token(token: str) -> str:
    return PREFIX + hashlib.sha256(token.encode()).hexdigest()


def meter_token_matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_meter_token(token), token_hash or DUMMY_HASH) and bool(token_hash)


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is none."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token
