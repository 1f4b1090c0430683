"""Apply a commissioning file to the platform, and write a building back out.

`commission_building` is idempotent: it compares before it writes, so a second
run with the same file changes nothing (not even updated_at) and reports no
changes. Everything happens in one transaction, the condominium's new schema
included: a file that fails half-way leaves nothing behind.

Things removed from the file are retired, never deleted, so that history stays:
chargers, connectors and circuits get ``removed_at``; residents are
deactivated; id tags are blocked; building roles (board, resident) are revoked.
Company manager roles are only ever added here, since one manager appears in
the files of many buildings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from apps.accounts.models import CompanyMembership, CondominiumMembership, User
from apps.accounts.services import invite_new_people, people_to_invite
from apps.billing import pricing
from apps.billing.models import (
    BillingSettings,
    Tariff,
    TariffAssignment,
    TariffGroup,
    TariffGroupMember,
    TariffVersion,
)
from apps.billing.services import TariffRefused, tariff_publish_version
from apps.buildings.models import IdTag, ParkingSpot, Resident, Unit
from apps.charging.local_lists import local_list_request_sync
from apps.charging.models import ChargePoint, Connector
from apps.commissioning.schema import (
    SUPPLY,
    ChargerSpec,
    CommissioningError,
    CommissioningSpec,
    PersonSpec,
    Problem,
    SiteMeterSpec,
    dump,
    load,
    with_lines,
)
from apps.core.tenants import in_public_schema, in_schema
from apps.core.yamlfile import size_problem
from apps.electrical.models import Circuit, SiteMeter
from apps.electrical.tokens import hash_meter_token
from apps.tenancy.models import ChargerRegistration, Company, Condominium, Domain
from apps.tenancy.services import charger_hash_problem

CHARGER_HASHER = "charger_pbkdf2_sha256"


@dataclass
class CommissioningReport:
    condominium: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    # E-mails, not changes to the building: filled once the transaction has committed.
    invited: list[str] = field(default_factory=list)
    invitations_failed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.count())

    def count(self) -> int:
        return len(self.created) + len(self.updated) + len(self.retired)

    def lines(self) -> list[str]:
        out = [f"+ {item}" for item in self.created]
        out += [f"~ {item}" for item in self.updated]
        out += [f"- {item}" for item in self.retired]
        out = out or ["no changes"]
        out += [f"> invitation sent to {email}" for email in self.invited]
        out += [f"! invitation not sent to {problem}" for problem in self.invitations_failed]
        return out


class _Writer:
    """Creates or updates rows, saving only when a field really changes, and records what it did."""

    def __init__(self, report: CommissioningReport):
        self.report = report

    def upsert(self, model: type[Model], label: str, lookup: dict[str, Any], values: dict[str, Any]) -> Any:
        obj = model._default_manager.filter(**lookup).first()
        if obj is None:
            obj = model(**lookup, **values)
            obj.save()
            self.report.created.append(label)
            return obj
        changed = [name for name, value in values.items() if getattr(obj, name) != value]
        if changed:
            for name in changed:
                setattr(obj, name, values[name])
            obj.save()
            self.report.updated.append(f"{label} ({', '.join(changed)})")
        return obj

    def retire(self, obj: Model, label: str, **values: Any) -> None:
        changed = [name for name, value in values.items() if getattr(obj, name) != value]
        if changed:
            for name in changed:
                setattr(obj, name, values[name])
            obj.save()
            self.report.retired.append(label)


# --- reading and checking a file ---------------------------------------------------------


def read_file(path: str | Path) -> str:
    path = Path(path)
    try:
        # Refuse an oversized file before reading it into memory.
        too_big = size_problem(path.stat().st_size) if path.is_file() else None
        if too_big is not None:
            raise CommissioningError(str(path), [too_big])
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CommissioningError(str(path), [Problem((), f"cannot read the file: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise CommissioningError(str(path), [Problem((), "the file is not UTF-8 text")]) from None


def load_file(path: str | Path) -> CommissioningSpec:
    return load(read_file(path), source=str(path))


def _check_against_platform(spec: CommissioningSpec, source: str) -> None:
    """Problems only the database can reveal: names taken by another company or building."""
    problems: list[Problem] = []
    slug = spec.condominium.slug
    existing = Condominium.objects.filter(slug=slug).select_related("company").first()
    if existing is not None and existing.company.slug != spec.company.slug:
        problems.append(
            Problem(("condominium", "slug"), f"condominium {slug!r} belongs to company {existing.company.slug!r}")
        )
    for i, domain in enumerate(spec.condominium.domains):
        owner = Domain.objects.filter(domain=domain).exclude(tenant__slug=slug).select_related("tenant").first()
        if owner is not None:
            problems.append(
                Problem(("condominium", "domains", i), f"{domain} already leads to condominium {owner.tenant.slug!r}")
            )
    for i, charger in enumerate(spec.chargers):
        reg = (
            ChargerRegistration.objects.filter(charge_point_id__iexact=charger.id)
            .exclude(condominium__slug=slug)
            .select_related("condominium")
            .first()
        )
        if reg is not None:
            problems.append(
                Problem(
                    ("chargers", i, "id"),
                    f"charger {charger.id!r} is registered to condominium {reg.condominium.slug!r}; "
                    "chargePointIds are unique across the platform",
                )
            )
    for i, charger in enumerate(spec.chargers):
        if charger.password_hash is not None and (problem := charger_hash_problem(charger.password_hash)):
            problems.append(Problem(("chargers", i, "password_hash"), problem))
    problems += _people_of_other_companies(spec)
    if problems:
        raise CommissioningError(source, problems)


def _people_of_other_companies(spec: CommissioningSpec) -> list[Problem]:
    """A file may not change, or give a role to, a person who belongs to another company.

    Logins are platform-wide, so without this a file for one company could rename
    another company's manager, or attach them (and so their password, which they
    keep) to its buildings. Such a person is left to a platform admin; once the role
    is there, files that change nothing about the person apply as usual.
    Platform staff are treated the same way.
    """
    problems: list[Problem] = []
    company_slug, condo_slug = spec.company.slug, spec.condominium.slug
    for i, person in enumerate(spec.people):
        user = User.objects.filter(email__iexact=person.email).first()
        if user is None:
            continue
        elsewhere = (
            CompanyMembership.objects.filter(user=user).exclude(company__slug=company_slug).exists()
            or CondominiumMembership.objects.filter(user=user)
            .exclude(condominium__company__slug=company_slug)
            .exists()
        )
        if not (elsewhere or user.is_staff or user.is_superuser):
            continue
        changes = []
        if user.name != person.name:
            changes.append("their name")
        if person.language and user.preferred_language != person.language:
            changes.append("their language")
        held = set(
            CondominiumMembership.objects.filter(user=user, condominium__slug=condo_slug).values_list("role", flat=True)
        )
        if CompanyMembership.objects.filter(user=user, company__slug=company_slug).exists():
            held.add("manager")
        new_roles = [role for role in person.roles if role not in held]
        if new_roles:
            changes.append("a role (" + ", ".join(new_roles) + ")")
        if changes:
            who = "a platform administrator" if user.is_staff or user.is_superuser else "a person of another company"
            problems.append(
                Problem(
                    ("people", i, "email"),
                    f"{person.email} is {who}; this file would change {' and '.join(changes)}. A file cannot "
                    "change or take over such a person: use another e-mail address, or ask a platform admin",
                )
            )
    return problems


# --- applying ----------------------------------------------------------------------------


def commission_file(path: str | Path, *, invite: bool = True) -> CommissioningReport:
    return commission_text(read_file(path), source=str(path), invite=invite)


def commission_text(text: str, *, source: str = "<file>", invite: bool = True) -> CommissioningReport:
    spec = load(text, source=source)
    try:
        return commission_building(spec, source=source, invite=invite)
    except CommissioningError as exc:
        raise CommissioningError(exc.source, with_lines(text, exc.problems)) from None


def commission_building(spec: CommissioningSpec, *, source: str = "<file>", invite: bool = True) -> CommissioningReport:
    """Apply a validated file. Prefer commission_text/commission_file, whose refusals carry line numbers.

    With ``invite``, people of the file who have neither a password nor an invitation
    yet are e-mailed a link to choose a password, once the transaction has committed
    (a refused or failed file sends nothing). Running the file again invites nobody twice.
    """
    report = CommissioningReport(condominium=spec.condominium.slug)
    writer = _Writer(report)
    with in_public_schema():
        _check_against_platform(spec, source)
        try:
            with transaction.atomic():
                condominium = _apply_public(spec, writer)
                with in_schema(condominium.schema_name):
                    _apply_tenant(spec, condominium, writer)
        except CommissioningError as refused:
            raise CommissioningError(source, refused.problems) from None
        if invite:
            pending = people_to_invite(emails=[person.email for person in spec.people])
            if pending:
                transaction.on_commit(lambda: _invite(pending, report))
    return report


def _invite(emails: list[str], report: CommissioningReport) -> None:
    with in_public_schema():
        result = invite_new_people(emails=emails)
    report.invited += result.invited
    report.invitations_failed += result.failed


def _apply_public(spec: CommissioningSpec, writer: _Writer) -> Condominium:
    company = writer.upsert(
        Company, f"company {spec.company.slug}", {"slug": spec.company.slug}, {"name": spec.company.name}
    )
    c = spec.condominium
    condo_values = {
        "company": company,
        "name": c.name,
        "timezone": c.timezone,
        "currency": c.currency,
        "locale": c.locale,
        "billing_contact_name": c.billing_contact.name,
        "billing_contact_email": c.billing_contact.email,
        "billing_address": c.billing_contact.address,
    }
    condominium = Condominium.objects.filter(slug=c.slug).first()
    if condominium is None:
        condominium = Condominium(slug=c.slug, schema_name=schema_name_for(c.slug), **condo_values)
        condominium.save(verbosity=0)  # creates and migrates the schema, inside our transaction
        writer.report.created.append(f"condominium {c.slug} (schema {condominium.schema_name})")
    else:
        condominium = writer.upsert(Condominium, f"condominium {c.slug}", {"slug": c.slug}, condo_values)

    for i, domain in enumerate(c.domains):
        writer.upsert(Domain, f"domain {domain}", {"domain": domain}, {"tenant": condominium, "is_primary": i == 0})
    for stale in Domain.objects.filter(tenant=condominium).exclude(domain__in=c.domains):
        writer.report.retired.append(f"domain {stale.domain}")
        stale.delete()

    for charger in spec.chargers:
        _register_charger(charger.id, charger.password, charger.password_hash, condominium, writer)
    kept = {ch.id for ch in spec.chargers}
    for reg in ChargerRegistration.objects.filter(condominium=condominium).exclude(charge_point_id__in=kept):
        # The charger can no longer connect; its history stays in the building's schema.
        writer.report.retired.append(f"charger registration {reg.charge_point_id}")
        reg.delete()

    _apply_people_public(spec, company, condominium, writer)
    return condominium


def schema_name_for(slug: str) -> str:
    return "condo_" + slug.replace("-", "_")


def _register_charger(cp_id: str, password: str | None, password_hash: str | None, condominium, writer) -> None:
    reg = ChargerRegistration.objects.filter(charge_point_id__iexact=cp_id).first()
    # The file's passwords are 16+ characters (schema); a hash says nothing of its password's length.
    weak = False if password is not None else None
    if reg is None:
        new_hash = password_hash or make_password(password, hasher=CHARGER_HASHER)
        ChargerRegistration.objects.create(charge_point_id=cp_id, condominium=condominium, password_hash=new_hash,
                                           password_weak=weak)
        writer.report.created.append(f"charger registration {cp_id}")
        return
    changed = []
    if password is not None and not check_password(password, reg.password_hash):
        reg.password_hash = make_password(password, hasher=CHARGER_HASHER)
        reg.password_weak = weak
        changed.append("password")
    if password_hash is not None and password_hash != reg.password_hash:
        reg.password_hash = password_hash
        reg.password_weak = weak
        changed.append("password")
    if reg.charge_point_id != cp_id:
        reg.charge_point_id = cp_id
        changed.append("charge_point_id")
    if changed:
        reg.save()
        writer.report.updated.append(f"charger registration {cp_id} ({', '.join(changed)})")


def _apply_people_public(spec: CommissioningSpec, company: Company, condominium: Condominium, writer) -> None:
    listed: dict[str, set[str]] = {}
    for person in spec.people:
        user = _apply_person_public(person, company, condominium, writer)
        listed[user.email] = set(person.roles) - {"manager"}
    for membership in CondominiumMembership.objects.filter(condominium=condominium).select_related("user"):
        if membership.role not in listed.get(membership.user.email, set()):
            writer.report.retired.append(f"{membership.role} {membership.user.email}")
            membership.delete()


def _apply_person_public(person: PersonSpec, company: Company, condominium: Condominium, writer: _Writer) -> User:
    """The person's login and roles; nothing of anybody else is touched."""
    user = User.objects.filter(email__iexact=person.email).first()
    values = {"name": person.name} | ({"preferred_language": person.language} if person.language else {})
    if user is None:
        user = User.objects.create_user(person.email, None, **values)  # no password: set by reset link
        writer.report.created.append(f"user {person.email}")
    else:
        writer.upsert(User, f"user {person.email}", {"pk": user.pk}, values)
    roles = set(person.roles)
    if "manager" in roles:
        writer.upsert(
            CompanyMembership,
            f"manager {person.email} of {company.slug}",
            {"user": user, "company": company, "role": CompanyMembership.Role.MANAGER},
            {},
        )
    for role in roles - {"manager"}:
        writer.upsert(
            CondominiumMembership,
            f"{role} {person.email}",
            {"user": user, "condominium": condominium, "role": role},
            {},
        )
    return user


def _apply_tenant(spec: CommissioningSpec, condominium: Condominium, writer: _Writer) -> None:
    now = timezone.now()
    circuits = _apply_circuits(spec, writer, now)
    _apply_site_meter(spec, circuits, writer, now)
    spots = _apply_units(spec, writer)
    _apply_chargers(spec, circuits, spots, writer, now)
    changes_before = writer.report.count()
    _apply_residents(spec, writer, now)
    if writer.report.count() != changes_before:
        # Cards or residents changed: the chargers' local authorization lists must follow.
        local_list_request_sync()
    _apply_billing(spec, writer, now)


def _apply_billing(spec: CommissioningSpec, writer: _Writer, now) -> None:
    """Tariff settings, groups, tariffs, their versions (published, never edited) and who pays which."""
    writer.upsert(BillingSettings, "billing settings", {}, {"prices_include_tax": spec.billing.prices_include_tax})
    zone = ZoneInfo(spec.condominium.timezone)
    groups = {}
    for g in spec.tariff_groups:
        groups[g.code] = writer.upsert(TariffGroup, f"tariff group {g.code}", {"code": g.code}, {"name": g.name})
        members = set()
        for resident in Resident.objects.filter(user__email__in=g.members, is_active=True).select_related("user"):
            writer.upsert(TariffGroupMember, f"tariff group {g.code} member {resident.user.email}",
                          {"resident": resident}, {"group": groups[g.code]})
            members.add(resident.pk)
        for stale in TariffGroupMember.objects.filter(group=groups[g.code]).exclude(resident_id__in=members):
            writer.report.retired.append(f"tariff group {g.code} member {stale.resident_id}")
            stale.delete()
    problems: list[Problem] = []
    wanted: dict[tuple[str, int | None, int | None], Tariff] = {}
    for i, t in enumerate(spec.tariffs):
        tariff = writer.upsert(Tariff, f"tariff {t.code}", {"code": t.code},
                               {"name": t.name, "description": t.description})
        in_order = sorted(enumerate(t.versions), key=lambda pair: _effective_from(pair[1].effective_from, zone))
        for j, version in in_order:
            place = ("tariffs", i, "versions", j)
            problems += _apply_tariff_version(tariff, version, place, spec.condominium.currency, zone, writer, now)
        for target in t.applies_to:
            group = groups[target.group].pk if target.group else None
            for connector_pk in _target_connectors(target):
                wanted[(target.audience, group, connector_pk)] = tariff
    if problems:
        raise CommissioningError("", problems)  # commission_building names the file
    kept = []
    for (audience, group_pk, connector_pk), tariff in wanted.items():
        label = f"tariff {tariff.code} for {audience}" + (f" on connector {connector_pk}" if connector_pk else "")
        row = writer.upsert(TariffAssignment, label,
                            {"audience": audience, "group_id": group_pk, "connector_id": connector_pk},
                            {"tariff": tariff})
        kept.append(row.pk)
    for stale in TariffAssignment.objects.exclude(pk__in=kept).select_related("tariff"):
        writer.report.retired.append(f"tariff assignment {stale}")
        stale.delete()
    for stale_group in TariffGroup.objects.exclude(code__in=groups):
        writer.report.retired.append(f"tariff group {stale_group.code}")
        stale_group.delete()


def _effective_from(value: date | datetime, zone: ZoneInfo) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time(0), tzinfo=zone)


def _target_connectors(target) -> list[int | None]:
    if target.charger is None:
        return [None]
    connectors = Connector.objects.filter(charge_point__charge_point_id=target.charger, removed_at__isnull=True)
    if target.connector is not None:
        connectors = connectors.filter(connector_id=target.connector)
    return list(connectors.order_by("connector_id").values_list("pk", flat=True))


def _apply_tariff_version(tariff: Tariff, version, place: tuple, currency: str, zone: ZoneInfo,
                          writer: _Writer, now) -> list[Problem]:
    """Publish a version the building does not have yet; one it has must be exactly as published."""
    effective_from = _effective_from(version.effective_from, zone)
    prices = pricing.parse_tariff(version.document(), currency=currency)
    document = pricing.tariff_document(prices)
    existing = TariffVersion.objects.filter(tariff=tariff, effective_from=effective_from,
                                            published_at__isnull=False).first()
    if existing is not None:
        # The same prices however written (0.10 or 0.1): the version as published, nothing to do.
        if existing.currency == currency and pricing.parse_tariff(existing.document, currency=currency) == prices:
            return []
        return [Problem(place, f"tariff {tariff.code} v{existing.number}, in force from "
                        f"{effective_from.isoformat()}, is published and never changes; to change its prices add a "
                        "version with a later effective_from")]
    try:
        created = tariff_publish_version(tariff=tariff, effective_from=effective_from, document=document,
                                         currency=currency, now=now)
    except TariffRefused as refused:
        return [Problem((*place, *p.path), p.message) for p in refused.problems]
    writer.report.created.append(f"tariff {tariff.code} v{created.number} (from {effective_from.isoformat()})")
    return []


def _limits(currents: tuple[Decimal, Decimal, Decimal]) -> dict[str, Decimal]:
    return {"max_current_l1_a": currents[0], "max_current_l2_a": currents[1], "max_current_l3_a": currents[2]}


def _apply_circuits(spec: CommissioningSpec, writer: _Writer, now) -> dict[str, Circuit]:
    s = spec.electrical.supply
    circuits = {
        SUPPLY: writer.upsert(
            Circuit,
            "circuit supply",
            {"key": SUPPLY},
            {
                "parent": None,
                "name": "Supply",
                "voltage_v": s.voltage_v,
                "phases": s.phases,
                "max_power_w": s.max_power_w,
                "derate": s.derate,
                "margin_a": s.margin_a,
                "safe_ev_budget_a": s.safe_ev_budget_a,
                "removed_at": None,
                **_limits(s.max_current_a),
            },
        )
    }
    pending = list(spec.electrical.circuits)
    while pending:  # parents before children; cross_check() has ruled out loops and unknown parents
        ready = [c for c in pending if c.parent in circuits]
        for c in ready:
            circuits[c.id] = writer.upsert(
                Circuit,
                f"circuit {c.id}",
                {"key": c.id},
                {
                    "parent": circuits[c.parent],
                    "name": c.name,
                    "voltage_v": s.voltage_v,
                    "phases": s.phases,
                    "max_power_w": c.max_power_w,
                    "derate": c.derate,
                    "margin_a": c.margin_a,
                    "removed_at": None,
                    **_limits(c.max_current_a),
                },
            )
        pending = [c for c in pending if c not in ready]
    for circuit in Circuit.objects.exclude(key__in=circuits).filter(removed_at__isnull=True):
        writer.retire(circuit, f"circuit {circuit.key}", removed_at=now)
    return circuits


def _apply_site_meter(spec: CommissioningSpec, circuits: dict[str, Circuit], writer: _Writer, now) -> None:
    meter = spec.electrical.site_meter
    keep = []
    if meter is not None:
        _apply_meter(meter, circuits, writer)
        keep.append(meter.id)
    for old in SiteMeter.objects.exclude(key__in=keep).filter(removed_at__isnull=True):
        writer.retire(old, f"site meter {old.key}", removed_at=now)


def _apply_meter(meter: SiteMeterSpec, circuits: dict[str, Circuit], writer: _Writer) -> SiteMeter:
    """The site meter (its circuit in place); no other meter."""
    existing = SiteMeter.objects.filter(key=meter.id).first()
    if meter.token_hash:
        token_hash = meter.token_hash
    elif meter.token:
        token_hash = hash_meter_token(meter.token)
    else:
        token_hash = ""
    settings: dict[str, Any] = {}
    if meter.modbus is not None:
        # As JSON: Decimals (interval, scale) become strings, read back exactly.
        settings["modbus"] = meter.modbus.model_dump(mode="json", exclude_none=True)
    if meter.ocpp is not None:
        settings["ocpp"] = meter.ocpp.model_dump(mode="json")
    return writer.upsert(
        SiteMeter,
        f"site meter {meter.id}",
        {"key": meter.id},
        {
            "circuit": circuits[meter.circuit],
            "source": meter.source,
            "stale_after_s": meter.stale_after_s,
            "token_hash": token_hash if token_hash or existing is None else existing.token_hash,
            "settings": settings,
            "removed_at": None,
        },
    )


def _apply_units(spec: CommissioningSpec, writer: _Writer) -> dict[str, ParkingSpot]:
    numbers = [u.number for u in spec.units]
    numbers += [p.unit for p in spec.people if p.unit and p.unit not in numbers]
    units = {n: writer.upsert(Unit, f"unit {n}", {"number": n}, {"is_active": True}) for n in numbers}
    for unit in Unit.objects.exclude(number__in=numbers).filter(is_active=True):
        writer.retire(unit, f"unit {unit.number}", is_active=False)

    spot_unit = {spot: u.number for u in spec.units for spot in u.parking_spots}
    labels = list(spot_unit)
    labels += [
        c.parking_spot
        for ch in spec.chargers
        for c in ch.connectors
        if c.parking_spot and c.parking_spot not in spot_unit
    ]
    spots = {}
    for label in labels:
        unit = units[spot_unit[label]] if label in spot_unit else None
        spots[label] = writer.upsert(ParkingSpot, f"parking spot {label}", {"label": label}, {"unit": unit})
    for spot in ParkingSpot.objects.exclude(label__in=labels).filter(unit__isnull=False):
        writer.retire(spot, f"parking spot {spot.label} (unassigned)", unit=None)
    return spots


def _apply_chargers(spec, circuits, spots, writer: _Writer, now) -> None:
    kept = [_apply_charger(charger, circuits, spots, writer, now).pk for charger in spec.chargers]
    for old_cp in ChargePoint.objects.exclude(pk__in=kept).filter(removed_at__isnull=True):
        writer.retire(old_cp, f"charger {old_cp.charge_point_id}", removed_at=now, enabled=False)
        for old in old_cp.connectors.filter(removed_at__isnull=True):
            old.removed_at = now
            old.save(update_fields=["removed_at", "updated_at"])


def _apply_charger(charger: ChargerSpec, circuits: dict[str, Circuit], spots: dict[str, ParkingSpot],
                   writer: _Writer, now) -> ChargePoint:
    """One charger and its connectors (its circuit and parking spots already in place); no other charger."""
    cp = writer.upsert(
        ChargePoint,
        f"charger {charger.id}",
        {"charge_point_id": charger.id},
        {"circuit": circuits[charger.circuit], "enabled": charger.enabled, "removed_at": None},
    )
    connector_ids = []
    for c in charger.connectors:
        writer.upsert(
            Connector,
            f"connector {charger.id}#{c.id}",
            {"charge_point": cp, "connector_id": c.id},
            {
                "is_dc": c.dc,
                "phases": c.effective_phases,
                "phase_rotation": c.effective_rotation,
                "min_current_a": c.effective_min_current_a,
                "max_current_a": c.max_current_a,
                "min_power_w": c.min_power_w,
                "max_power_w": c.max_power_w,
                "efficiency": c.efficiency,
                "parking_spot": spots.get(c.parking_spot) if c.parking_spot else None,
                "removed_at": None,
            },
        )
        connector_ids.append(c.id)
    for old in cp.connectors.exclude(connector_id__in=connector_ids).filter(removed_at__isnull=True):
        writer.retire(old, f"connector {charger.id}#{old.connector_id}", removed_at=now)
    return cp


def _apply_residents(spec: CommissioningSpec, writer: _Writer, now) -> None:
    kept_residents = []
    kept_tags = []
    for person in spec.people:
        if "resident" not in person.roles:
            continue
        kept_residents.append(_apply_resident(person, writer).pk)
        kept_tags += person.id_tags
    for resident in (
        Resident.objects.exclude(pk__in=kept_residents).filter(is_active=True).select_related("user", "unit")
    ):
        writer.retire(resident, f"resident {resident.user.email} in {resident.unit.number}", is_active=False)
    for tag in IdTag.objects.exclude(id_tag__in=kept_tags).exclude(status_reason=RETIRED_TAG_REASON):
        writer.retire(
            tag, f"id tag {tag.id_tag} (blocked)", status=IdTag.Status.BLOCKED, status_reason=RETIRED_TAG_REASON
        )


RETIRED_TAG_REASON = "no longer in the commissioning file"


def _apply_resident(person: PersonSpec, writer: _Writer) -> Resident:
    """A resident (whose login and unit are in place) and their cards; no other resident or card."""
    user = User.objects.get(email__iexact=person.email)
    unit = Unit.objects.get(number=person.unit)
    resident = writer.upsert(
        Resident, f"resident {person.email} in {unit.number}", {"user": user, "unit": unit}, {"is_active": True}
    )
    household = f"UNIT-{unit.number}".upper()[:20]
    for tag in person.id_tags:
        existing = IdTag.objects.filter(id_tag=tag).first()
        values: dict[str, Any] = {"resident": resident, "parent_id_tag": household}
        if existing is not None and existing.status_reason == RETIRED_TAG_REASON:
            values |= {"status": IdTag.Status.ACTIVE, "status_reason": ""}
        writer.upsert(IdTag, f"id tag {tag}", {"id_tag": tag}, values)
    return resident


# --- exporting ---------------------------------------------------------------------------


def _amps(l1: Decimal, l2: Decimal, l3: Decimal) -> Decimal | list[Decimal]:
    return l1 if l1 == l2 == l3 else [l1, l2, l3]


def _compact(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None and v != "" and v != []}


def export_condominium(slug: str) -> str:
    """The building as a commissioning file (passwords and tokens as their hashes)."""
    with in_public_schema():
        condominium = Condominium.objects.select_related("company").get(slug=slug)
        domains = list(
            Domain.objects.filter(tenant=condominium).order_by("-is_primary", "id").values_list("domain", flat=True)
        )
        registrations = dict(
            ChargerRegistration.objects.filter(condominium=condominium).values_list("charge_point_id", "password_hash")
        )
        managers = set(
            CompanyMembership.objects.filter(company=condominium.company).values_list("user__email", flat=True)
        )
        memberships: dict[str, set[str]] = {}
        for email, role in CondominiumMembership.objects.filter(condominium=condominium).values_list(
            "user__email", "role"
        ):
            memberships.setdefault(email, set()).add(role)
    data: dict[str, Any] = {
        "company": {"slug": condominium.company.slug, "name": condominium.company.name},
        "condominium": _compact(
            {
                "slug": condominium.slug,
                "name": condominium.name,
                "domains": domains,
                "timezone": condominium.timezone,
                "currency": condominium.currency,
                "locale": condominium.locale,
                "billing_contact": _compact(
                    {
                        "name": condominium.billing_contact_name,
                        "email": condominium.billing_contact_email,
                        "address": condominium.billing_address,
                    }
                )
                or None,
            }
        ),
    }
    with in_schema(condominium.schema_name):
        data["electrical"] = _export_electrical()
        data["chargers"] = _export_chargers(registrations)
        data["units"] = [
            _compact({"number": u.number, "parking_spots": [s.label for s in u.parking_spots.order_by("label")]})
            for u in Unit.objects.filter(is_active=True).order_by("number")
        ]
        data["people"] = _export_people(memberships, managers)
        data.update(_export_billing(ZoneInfo(condominium.timezone)))
    return dump(_compact(data))


_DECIMAL_KEYS = {"price", "tax_rate", "cap", "min_kwh", "max_kwh"}


def _decimals_back(value: Any) -> Any:
    """A stored tariff document (numbers as strings) with its numbers as Decimal again, as a file has them."""
    if isinstance(value, dict):
        return {k: Decimal(v) if k in _DECIMAL_KEYS and isinstance(v, str) else _decimals_back(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals_back(v) for v in value]
    return value


def _export_billing(zone: ZoneInfo) -> dict[str, Any]:
    settings = BillingSettings.objects.first()
    groups = []
    for group in TariffGroup.objects.order_by("code"):
        members = sorted(group.members.values_list("resident__user__email", flat=True))
        groups.append(_compact({"code": group.code, "name": group.name, "members": members}))
    targets: dict[int, list[dict[str, Any]]] = {}
    for a in TariffAssignment.objects.select_related("group", "connector__charge_point").order_by(
            "audience", "group__code", "connector__charge_point__charge_point_id", "connector__connector_id"):
        target = {"group": a.group.code} if a.group_id else {"who": a.audience}
        if a.connector_id:
            target |= {"charger": a.connector.charge_point.charge_point_id, "connector": a.connector.connector_id}
        targets.setdefault(a.tariff_id, []).append(target)
    tariffs = []
    for t in Tariff.objects.all():
        versions = []
        for v in TariffVersion.objects.filter(tariff=t, published_at__isnull=False).order_by("effective_from"):
            local = v.effective_from.astimezone(zone)
            when = local.date() if local.time() == time(0) else local
            versions.append({"effective_from": when, **_decimals_back(v.document)})
        tariffs.append(_compact({"code": t.code, "name": t.name, "description": t.description,
                                 "versions": versions, "applies_to": targets.get(t.pk, [])}))
    billing = {"prices_include_tax": True} if settings and settings.prices_include_tax else None
    return {"billing": billing, "tariff_groups": groups, "tariffs": tariffs}


def _export_electrical() -> dict[str, Any]:
    supply = Circuit.objects.get(key=SUPPLY)
    electrical: dict[str, Any] = {
        "supply": _compact(
            {
                "voltage_v": supply.voltage_v,
                "phases": supply.phases,
                "max_current_a": _amps(*supply.max_current_a),
                "max_power_w": supply.max_power_w,
                "derate": supply.derate,
                "margin_a": supply.margin_a,
                "safe_ev_budget_a": supply.safe_ev_budget_a or None,
            }
        )
    }
    meter = SiteMeter.objects.filter(removed_at__isnull=True).select_related("circuit").first()
    if meter is not None:
        electrical["site_meter"] = _compact(
            {
                "id": meter.key,
                "source": meter.source,
                "circuit": meter.circuit.key if meter.circuit.key != SUPPLY else None,
                "stale_after_s": meter.stale_after_s,
                "token_hash": meter.token_hash,
                **meter.settings,
            }
        )
    circuits = []
    ordered = _tree_order(
        list(Circuit.objects.filter(removed_at__isnull=True).exclude(key=SUPPLY).select_related("parent"))
    )
    for c in ordered:
        circuits.append(
            _compact(
                {
                    "id": c.key,
                    "name": c.name,
                    "parent": c.parent.key,
                    "max_current_a": _amps(*c.max_current_a),
                    "max_power_w": c.max_power_w,
                    "derate": c.derate if c.derate != 1 else None,
                    "margin_a": c.margin_a if c.margin_a else None,
                }
            )
        )
    electrical["circuits"] = circuits
    return electrical


def _tree_order(circuits: list[Circuit]) -> list[Circuit]:
    placed = {SUPPLY}
    ordered: list[Circuit] = []
    remaining = sorted(circuits, key=lambda c: c.key)
    while remaining:
        ready = [c for c in remaining if c.parent.key in placed]
        if not ready:  # parent retired: keep the child, under its recorded parent
            ready = remaining
        ordered += ready
        placed |= {c.key for c in ready}
        remaining = [c for c in remaining if c not in ready]
    return ordered


def _export_chargers(registrations: dict[str, str]) -> list[dict[str, Any]]:
    chargers = []
    for cp in ChargePoint.objects.filter(removed_at__isnull=True).select_related("circuit").order_by("charge_point_id"):
        connectors = []
        for c in cp.connectors.filter(removed_at__isnull=True).select_related("parking_spot").order_by("connector_id"):
            default_min = Decimal("0") if c.is_dc else Decimal("6")
            connectors.append(
                _compact(
                    {
                        "id": c.connector_id,
                        "dc": True if c.is_dc else None,
                        "phases": c.phases,
                        "phase_rotation": c.phase_rotation,
                        "min_current_a": c.min_current_a if c.min_current_a != default_min else None,
                        "max_current_a": c.max_current_a,
                        "min_power_w": c.min_power_w,
                        "max_power_w": c.max_power_w,
                        "efficiency": c.efficiency,
                        "parking_spot": c.parking_spot.label if c.parking_spot else None,
                    }
                )
            )
        chargers.append(
            _compact(
                {
                    "id": cp.charge_point_id,
                    "password_hash": registrations.get(cp.charge_point_id),
                    "circuit": cp.circuit.key,
                    "enabled": False if not cp.enabled else None,
                    "connectors": connectors,
                }
            )
        )
    return chargers


def _export_people(memberships: dict[str, set[str]], managers: set[str]) -> list[dict[str, Any]]:
    residents: dict[str, Resident] = {
        r.user.email: r for r in Resident.objects.filter(is_active=True).select_related("user", "unit")
    }
    tags: dict[int, list[str]] = {}
    for tag in IdTag.objects.exclude(status_reason=RETIRED_TAG_REASON).order_by("id_tag"):
        tags.setdefault(tag.resident_id, []).append(tag.id_tag)
    emails = sorted(set(memberships) | set(residents))
    users = {u.email: u for u in User.objects.filter(email__in=emails)}
    people = []
    for email in emails:
        roles = []
        if email in managers:
            roles.append("manager")
        roles += [r for r in ("board", "resident") if r in memberships.get(email, set())]
        resident = residents.get(email)
        user = users[email]
        people.append(
            _compact(
                {
                    "email": email,
                    "name": user.name,
                    "unit": resident.unit.number if resident and "resident" in roles else None,
                    "roles": roles,
                    "id_tags": tags.get(resident.pk, []) if resident and "resident" in roles else [],
                    "language": user.preferred_language or None,
                }
            )
        )
    return people
