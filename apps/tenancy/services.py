"""Charger credentials in the platform-wide registry (public schema)."""

from __future__ import annotations

import secrets

from django.contrib.auth.hashers import identify_hasher, make_password
from django_tenants.utils import get_public_schema_name, schema_context

from apps.tenancy.hashers import ChargerPasswordHasher
from apps.tenancy.models import ChargerRegistration

GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters: easy to type into a charger's web page


def charger_hash_problem(password_hash: str) -> str | None:
    """Why a stored hash cannot be a charger's, or None.

    Only the chargers' own algorithm at its own cost is taken: a people's hash would cost a million rounds
    at every reconnect, a cheaper one would weaken the secret at rest.
    """
    expected = ChargerPasswordHasher()
    try:
        hasher = identify_hasher(password_hash)
    except ValueError:
        return f"not a password hash; expected {expected.algorithm}${expected.iterations}$<salt>$<hash>"
    if hasher.algorithm != expected.algorithm:
        return f"hashed with {hasher.algorithm}; chargers' passwords use {expected.algorithm}"
    iterations = hasher.decode(password_hash)["iterations"]
    if iterations != expected.iterations:
        return f"hashed with {iterations} iterations; chargers' passwords use {expected.iterations}"
    return None


def charger_password_reset(*, charge_point_id: str) -> tuple[str, str]:
    """Give the charger a new generated password: (the password, its hash for the commissioning file).

    Raises ChargerRegistration.DoesNotExist for an id that is not registered. The charger's current
    connection stays up; its next handshake needs the new password.
    """
    password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
    password_hash = make_password(password, hasher=ChargerPasswordHasher.algorithm)
    # schema_context itself, not apps.core.tenants: that module builds on this app (the layers in pyproject.toml).
    with schema_context(get_public_schema_name()):
        registration = ChargerRegistration.objects.get(charge_point_id__iexact=charge_point_id)
        registration.password_hash = password_hash
        registration.password_weak = False
        registration.save(update_fields=["password_hash", "password_weak", "updated_at"])
    return password, password_hash
