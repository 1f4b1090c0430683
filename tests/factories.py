"""Small builders for test data. Tests call these inside the schema they need.

Condominiums are expensive (a schema and its migrations), so the session-wide
ones in tests/conftest.py are shared; make new ones only when a test must.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.hashers import make_password

from apps.accounts.models import CompanyMembership, CondominiumMembership, User
from apps.buildings.models import IdTag, ParkingSpot, Resident, Unit
from apps.charging.models import ChargePoint, Connector
from apps.core.tenants import in_public_schema, in_schema
from apps.electrical.models import Circuit
from apps.tenancy.models import ChargerRegistration, Company, Condominium, Domain

CHARGER_HASHER = "charger_pbkdf2_sha256"


def company(slug: str, name: str | None = None) -> Company:
    return Company.objects.get_or_create(slug=slug, defaults={"name": name or slug.title()})[0]


def condominium(company_obj: Company, slug: str, *, timezone: str = "America/Los_Angeles") -> Condominium:
    with in_public_schema():
        condo = Condominium.objects.filter(slug=slug).first()
        if condo is None:
            condo = Condominium(
                company=company_obj,
                slug=slug,
                name=slug.replace("-", " ").title(),
                schema_name=slug.replace("-", "_"),
                timezone=timezone,
            )
            condo.save(verbosity=0)
            Domain.objects.create(domain=f"{slug}.localhost", tenant=condo, is_primary=True)
    return condo


def user(email: str, password: str = "correct-horse-battery", name: str = "") -> User:
    existing = User.objects.filter(email=email).first()
    return existing or User.objects.create_user(email, password, name=name or email.split("@")[0].title())


def manager(company_obj: Company, email: str) -> User:
    person = user(email)
    CompanyMembership.objects.get_or_create(user=person, company=company_obj)
    return person


def board_member(condo: Condominium, email: str) -> User:
    person = user(email)
    CondominiumMembership.objects.get_or_create(user=person, condominium=condo, role="board")
    return person


def resident(condo: Condominium, email: str, unit_number: str, id_tags: tuple[str, ...] = ()) -> User:
    person = user(email)
    CondominiumMembership.objects.get_or_create(user=person, condominium=condo, role="resident")
    with in_schema(condo.schema_name):
        unit = Unit.objects.get_or_create(number=unit_number)[0]
        res = Resident.objects.get_or_create(user=person, unit=unit)[0]
        for tag in id_tags:
            IdTag.objects.get_or_create(id_tag=tag.upper(), defaults={"resident": res})
    return person


def supply(condo: Condominium, max_current_a: str = "200") -> Circuit:
    with in_schema(condo.schema_name):
        amps = Decimal(max_current_a)
        return Circuit.objects.get_or_create(
            key="supply",
            defaults={
                "max_current_l1_a": amps,
                "max_current_l2_a": amps,
                "max_current_l3_a": amps,
                "derate": Decimal("0.8"),
                "margin_a": Decimal("5"),
            },
        )[0]


def charger(
    condo: Condominium,
    charge_point_id: str,
    password: str = "charger-secret-0001",
    connectors: int = 2,
    parking_spots: tuple[str, ...] = (),
) -> ChargePoint:
    with in_public_schema():
        ChargerRegistration.objects.update_or_create(
            charge_point_id=charge_point_id,
            defaults={"condominium": condo, "password_hash": make_password(password, hasher=CHARGER_HASHER)},
        )
    circuit = supply(condo)
    with in_schema(condo.schema_name):
        cp = ChargePoint.objects.get_or_create(charge_point_id=charge_point_id, defaults={"circuit": circuit})[0]
        for n in range(1, connectors + 1):
            spot = None
            if n <= len(parking_spots):
                spot = ParkingSpot.objects.get_or_create(label=parking_spots[n - 1])[0]
            Connector.objects.get_or_create(
                charge_point=cp,
                connector_id=n,
                defaults={"max_current_a": Decimal("32"), "phases": 1, "parking_spot": spot},
            )
        return cp
