"""Per-test additions to the commissioned buildings of tests/conftest.py.

The buildings themselves are commissioned from YAML, as in production. A test that needs a charger,
a resident or a board member of its own adds one here: the rows are written by the commissioning
code itself (its spec models, defaults and writers), as if the building's file had one more entry,
but nothing else of the building is compared or retired. Call these from any schema.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.utils import timezone

from apps.accounts.models import User
from apps.buildings.models import Unit
from apps.charging.models import ChargePoint
from apps.commissioning import services as commissioning
from apps.commissioning.schema import SUPPLY, ChargerSpec, PersonSpec, SiteMeterSpec
from apps.core.tenants import in_public_schema, in_schema
from apps.electrical.models import Circuit, SiteMeter
from apps.tenancy.models import ChargerRegistration, Condominium

PASSWORD = "correct-horse-battery"  # every test person's login password
CHARGER_PASSWORD = "charger-secret-0001"


def _writer(condo: Condominium) -> commissioning._Writer:
    return commissioning._Writer(commissioning.CommissioningReport(condominium=condo.slug))


def set_password(user: User, password: str = PASSWORD) -> User:
    """What ``manage.py demo_logins`` does for the demo: commissioned people have no password until they choose one."""
    user.set_password(password)
    user.save(update_fields=["password"])
    return user


def person(condo: Condominium, email: str, *, roles: tuple[str, ...], unit: str | None = None,
           id_tags: tuple[str, ...] = (), password: str | None = PASSWORD) -> User:
    """One more entry of the building's ``people``: the login, the roles and (for a resident) unit and cards."""
    spec = PersonSpec.model_validate({
        "email": email, "name": email.split("@")[0].title(), "unit": unit, "roles": list(roles),
        "id_tags": list(id_tags),
    })
    writer = _writer(condo)
    with in_public_schema():
        condo = Condominium.objects.select_related("company").get(pk=condo.pk)
        user = commissioning._apply_person_public(spec, condo.company, condo, writer)
    if "resident" in spec.roles:
        with in_schema(condo.schema_name):
            writer.upsert(Unit, f"unit {spec.unit}", {"number": spec.unit}, {"is_active": True})
            commissioning._apply_resident(spec, writer)
    if password is not None and not user.has_usable_password():
        with in_public_schema():
            set_password(user, password)
    return user


def resident(condo: Condominium, email: str, unit_number: str, id_tags: tuple[str, ...] = ()) -> User:
    return person(condo, email, roles=("resident",), unit=unit_number, id_tags=id_tags)


def board_member(condo: Condominium, email: str) -> User:
    return person(condo, email, roles=("board",))


def charger(
    condo: Condominium, charge_point_id: str, password: str = CHARGER_PASSWORD, connectors: int = 2
) -> ChargePoint:
    """One more entry of the building's ``chargers``: on the supply, single-phase 32 A connectors."""
    if len(password) >= 16:
        credentials = {"password": password}
    else:
        # Shorter than a file allows: a charger installed earlier, whose file carries the hash (as an export does).
        credentials = {"password_hash": make_password(password, hasher=commissioning.CHARGER_HASHER)}
    spec = ChargerSpec.model_validate({
        "id": charge_point_id, **credentials, "circuit": SUPPLY,
        "connectors": [{"id": n, "max_current_a": Decimal(32), "phases": 1} for n in range(1, connectors + 1)],
    })
    writer = _writer(condo)
    with in_public_schema():
        elsewhere = ChargerRegistration.objects.filter(charge_point_id__iexact=spec.id).exclude(condominium=condo)
        # Commissioning refuses this too: retire it from its building first (charger_retire).
        assert not elsewhere.exists(), f"{spec.id} is registered to another building"
        commissioning._register_charger(spec.id, spec.password, spec.password_hash, condo, writer)
    with in_schema(condo.schema_name):
        circuits = {SUPPLY: Circuit.objects.get(key=SUPPLY)}
        return commissioning._apply_charger(spec, circuits, {}, writer, timezone.now())


def charger_retire(condo: Condominium, charge_point_id: str) -> None:
    """What applying the building's file without the charger does: it can no longer connect; its history stays."""
    with in_public_schema():
        ChargerRegistration.objects.filter(condominium=condo, charge_point_id__iexact=charge_point_id).delete()
    now = timezone.now()
    with in_schema(condo.schema_name):
        cp = ChargePoint.objects.get(charge_point_id=charge_point_id)
        _writer(condo).retire(cp, f"charger {charge_point_id}", removed_at=now, enabled=False)
        cp.connectors.filter(removed_at__isnull=True).update(removed_at=now, updated_at=now)


def site_meter(condo: Condominium, meter: dict) -> SiteMeter:
    """The building's ``electrical.site_meter`` entry (a dict as in the file), other meters retired."""
    spec = SiteMeterSpec.model_validate(meter)
    writer = _writer(condo)
    with in_schema(condo.schema_name):
        circuits = {c.key: c for c in Circuit.objects.filter(removed_at__isnull=True)}
        SiteMeter.objects.exclude(key=spec.id).filter(removed_at__isnull=True).update(removed_at=timezone.now())
        return commissioning._apply_meter(spec, circuits, writer)


def site_meter_retire(condo: Condominium, key: str) -> None:
    with in_schema(condo.schema_name):
        SiteMeter.objects.filter(key=key).update(removed_at=timezone.now())
