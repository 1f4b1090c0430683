"""Who may see what. Every page of a condominium asks ``condominium_roles``."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from apps.accounts.models import CompanyMembership, CondominiumMembership, User
from apps.tenancy.models import Company, Condominium

MANAGER = "manager"
BOARD = CondominiumMembership.Role.BOARD.value
RESIDENT = CondominiumMembership.Role.RESIDENT.value


def condominium_roles(user, condominium: Condominium) -> frozenset[str]:
    """The roles ``user`` holds in ``condominium``: any of manager, board, resident."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return frozenset()
    roles = set(CondominiumMembership.objects.filter(user=user, condominium=condominium).values_list("role", flat=True))
    if CompanyMembership.objects.filter(
        user=user, company_id=condominium.company_id, role=CompanyMembership.Role.MANAGER
    ).exists():
        roles.add(MANAGER)
    return frozenset(roles)


def may_run_chargers(user, condominium: Condominium) -> bool:
    """Whether ``user`` may send commands to the condominium's chargers: its company's managers and superusers.

    Not every ``is_staff`` account: staff only reach the admin site, with the permissions given there.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.is_superuser or MANAGER in condominium_roles(user, condominium)


def managed_companies(user: User) -> QuerySet[Company]:
    return Company.objects.filter(memberships__user=user, memberships__role=CompanyMembership.Role.MANAGER).distinct()


def visible_condominiums(user: User) -> QuerySet[Condominium]:
    """Every condominium where ``user`` holds some role, through the company or directly."""
    return (
        Condominium.objects.filter(
            Q(company__memberships__user=user, company__memberships__role=CompanyMembership.Role.MANAGER)
            | Q(memberships__user=user)
        )
        .select_related("company")
        .distinct()
        .order_by("company__name", "name")
    )


def building_managers(condominium: Condominium) -> list[User]:
    """The people who run the building: its company's managers (active accounts)."""
    return list(User.objects.filter(company_memberships__company_id=condominium.company_id,
                                    company_memberships__role=CompanyMembership.Role.MANAGER, is_active=True)
                .distinct().order_by("email"))
