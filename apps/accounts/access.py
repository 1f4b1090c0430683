"""Access control for a condominium's pages.

A person without a role in the condominium of the current host gets 404:
the page does not say whether the building, or the thing asked for, exists.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import Http404

from apps.accounts.selectors import condominium_roles


def condominium_role_required(*allowed: str):
    """Require one of the ``allowed`` roles (all roles when none are named) in request.tenant."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            tenant = getattr(request, "tenant", None)
            if tenant is None:
                raise Http404("no condominium at this address")
            roles = condominium_roles(request.user, tenant)
            if not roles or (allowed and not roles.intersection(allowed)):
                raise Http404("not found")
            request.roles = roles
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
