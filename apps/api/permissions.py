"""Who may read what through the API: the same people as in the web app. Anyone without a role in the building the
host names gets 404 (not 403: as the pages, the API does not say what exists in a building one has no part in)."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission

from apps.accounts.selectors import BOARD, MANAGER, RESIDENT, condominium_roles


class _Roles(BasePermission):
    allowed: frozenset[str] = frozenset()

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False  # 401 (token) or 403 (session): log in first
        tenant = getattr(request, "tenant", None)
        if tenant is None or tenant.schema_name == "public":
            raise NotFound("not found")
        roles = condominium_roles(request.user, tenant)
        if not roles & self.allowed:
            raise NotFound("not found")
        request.roles = roles
        return True


class Staff(_Roles):
    """The building's managers and board members."""

    allowed = frozenset({MANAGER, BOARD})


class Anyone(_Roles):
    """Everyone with a role in the building: managers, board members, residents (what they see is scoped)."""

    allowed = frozenset({MANAGER, BOARD, RESIDENT})


def sees_everything(request) -> bool:
    """Managers and board members read the whole building; a resident only what is theirs."""
    return bool(request.roles & {MANAGER, BOARD})
