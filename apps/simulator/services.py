"""What the simulator writes to the platform's database: only its residents' phones' logins.

A simulated resident states their car's needs through the platform's HTTP endpoint like a real one, on a
logged-in session. Rather than typing a password into the login form (which the residents of a commissioned
building may not have chosen yet), the simulator signs their phone in directly: a session in the session store,
exactly what a login leaves there.
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model

from apps.core.tenants import in_public_schema

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def resident_phone_login(*, user_id: int) -> str:
    """Sign the user in as their phone would be: a new session in the session store; its key (the cookie)."""
    if MODEL_BACKEND not in settings.AUTHENTICATION_BACKENDS:
        raise RuntimeError(f"{MODEL_BACKEND} is not among AUTHENTICATION_BACKENDS: the session would not sign in")
    store = import_module(settings.SESSION_ENGINE).SessionStore
    with in_public_schema():
        user = get_user_model().objects.get(pk=user_id, is_active=True)
        session = store()
        session[SESSION_KEY] = user._meta.pk.value_to_string(user)
        session[BACKEND_SESSION_KEY] = MODEL_BACKEND
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
    return session.session_key


def resident_phones_logout(*, session_keys: list[str]) -> None:
    """Sign the simulated phones out at the end of a run: their sessions leave the store."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    with in_public_schema():
        for key in session_keys:
            store(session_key=key).delete()
