"""The commissioning file: parse, validate, and report problems with their place.

Pure: no Django. Numbers in the file are read as Decimal (never float), and
every problem names the path inside the file and, when known, its line:

    maple-court.yaml: chargers[0].connectors[1].max_current_a (line 23): must be greater than 0

The format is documented in docs/commissioning.md.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apps.billing.pricing import TariffInvalid, parse_tariff
from apps.core.yamlfile import FileRefused, Problem, dump, line_of, parse, with_lines

SUPPLY = "supply"
LANGUAGES = ("en", "es", "fr")
SINGLE_PHASE_ROTATIONS = ("L1", "L2", "L3")
THREE_PHASE_ROTATIONS = ("RST", "RTS", "SRT", "STR", "TRS", "TSR")
ROLES = ("manager", "board", "resident")

Slug = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
# OCPP chargePointId: it becomes the last segment of the websocket URL.
ChargePointId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
IdTagValue = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[\x21-\x7e]+$")]
Amps = Annotated[Decimal, Field(gt=0, le=100000, decimal_places=1)]
Watts = Annotated[int, Field(gt=0, le=10_000_000)]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _phase_currents(value: Any) -> Any:
    """``200`` means 200 A on every phase; ``[200, 200, 160]`` gives L1, L2, L3."""
    if isinstance(value, list):
        if len(value) != 3:
            raise ValueError("give one current for all phases, or a list of three (L1, L2, L3)")
        return tuple(value)
    return (value, value, value)


class CompanySpec(Spec):
    slug: Slug
    name: str = Field(min_length=1, max_length=200)


class BillingContactSpec(Spec):
    name: str = Field(default="", max_length=200)
    email: str = ""
    address: str = ""

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if value and not EMAIL.match(value):
            raise ValueError("is not an e-mail address")
        return value.lower()


class CondominiumSpec(Spec):
    slug: Slug
    name: str = Field(min_length=1, max_length=200)
    domains: list[str] = Field(min_length=1)
    timezone: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    locale: Literal["en", "es", "fr"] = "en"
    billing_contact: BillingContactSpec = BillingContactSpec()

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        lowered = [d.lower() for d in value]
        for domain in lowered:
            if not DOMAIN.match(domain):
                raise ValueError(f"{domain!r} is not a host name")
        if len(set(lowered)) != len(lowered):
            raise ValueError("lists a domain twice")
        return lowered

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/Los_Angeles)") from None
        if value not in available_timezones():
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. America/Los_Angeles)")
        return value


class SupplySpec(Spec):
    voltage_v: int = Field(ge=100, le=480)
    phases: Literal[1, 3] = 3
    max_current_a: tuple[Amps, Amps, Amps]
    max_power_w: Watts | None = None
    derate: Decimal = Field(default=Decimal("1"), gt=0, le=1, decimal_places=3)
    margin_a: Decimal = Field(default=Decimal("0"), ge=0, decimal_places=1)
    # Per phase, what the EVs may still draw when the site meter is silent (or when the platform is, through
    # the profiles' lease): the rating less the building's worst non-EV load. 0 pauses them.
    safe_ev_budget_a: Decimal = Field(default=Decimal("0"), ge=0, le=100000, decimal_places=1)

    _currents = field_validator("max_current_a", mode="before")(_phase_currents)


class RegisterMapSpec(Spec):
    """Where a meter without a shipped map keeps its per-phase values (apps/electrical/registers.py)."""

    function: Literal["input", "holding"] = "input"
    type: Literal["float32", "int32", "uint32", "int16", "uint16"] = "float32"
    word_order: Literal["big", "little"] = "big"
    quantity: Literal["current_a", "power_w"] = "current_a"
    addresses: list[Annotated[int, Field(ge=0, le=65535)]] = Field(min_length=1, max_length=3)
    scale: Decimal = Field(default=Decimal(1), gt=0, le=1000000)


MODBUS_PROFILES = ("sdm630", "sdm630-power", "em24", "em24-power", "custom")


class ModbusSpec(Spec):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=247)
    # The meter's register map: a shipped one, or "custom" with ``registers``.
    profile: Literal["sdm630", "sdm630-power", "em24", "em24-power", "custom"] = "sdm630"
    registers: RegisterMapSpec | None = None
    interval_s: Decimal = Field(default=Decimal(5), ge=Decimal("0.2"), le=3600, decimal_places=1)
    timeout_s: Decimal = Field(default=Decimal(2), ge=Decimal("0.1"), le=60, decimal_places=1)

    @model_validator(mode="after")
    def _registers(self) -> ModbusSpec:
        if self.profile == "custom" and self.registers is None:
            raise ValueError("a custom profile needs registers: {function, type, word_order, quantity, addresses}")
        if self.profile != "custom" and self.registers is not None:
            raise ValueError(f"registers are for profile: custom; {self.profile!r} has its own map")
        if self.timeout_s > self.interval_s:
            raise ValueError("timeout_s must not be longer than interval_s")
        return self


class OcppMeterSpec(Spec):
    charger: ChargePointId
    connector: int = Field(default=0, ge=0)


class SiteMeterSpec(Spec):
    id: Slug
    source: Literal["api", "ocpp", "modbus"]
    circuit: Slug = SUPPLY
    stale_after_s: int = Field(default=15, ge=1, le=3600)
    token: str | None = Field(default=None, min_length=8)
    token_hash: str | None = None
    modbus: ModbusSpec | None = None
    ocpp: OcppMeterSpec | None = None

    @model_validator(mode="after")
    def _source_settings(self) -> SiteMeterSpec:
        if self.source == "api" and not (self.token or self.token_hash):
            raise ValueError("an api site meter needs a token (the meter sends it as a bearer token)")
        if self.token and self.token_hash:
            raise ValueError("give token or token_hash, not both")
        if self.source == "modbus" and self.modbus is None:
            raise ValueError("a modbus site meter needs modbus: {host, port, unit_id}")
        if self.source == "ocpp" and self.ocpp is None:
            raise ValueError("an ocpp site meter needs ocpp: {charger, connector}")
        return self


class CircuitSpec(Spec):
    id: Slug
    name: str = Field(default="", max_length=200)
    parent: Slug
    max_current_a: tuple[Amps, Amps, Amps]
    max_power_w: Watts | None = None
    derate: Decimal = Field(default=Decimal("1"), gt=0, le=1, decimal_places=3)
    margin_a: Decimal = Field(default=Decimal("0"), ge=0, decimal_places=1)

    _currents = field_validator("max_current_a", mode="before")(_phase_currents)

    @field_validator("id")
    @classmethod
    def _not_supply(cls, value: str) -> str:
        if value == SUPPLY:
            raise ValueError("'supply' is the name of the building's supply; give the circuit another id")
        return value


class ElectricalSpec(Spec):
    supply: SupplySpec
    site_meter: SiteMeterSpec | None = None
    circuits: list[CircuitSpec] = []


class ConnectorSpec(Spec):
    id: int = Field(ge=1, le=99)
    dc: bool = False
    phases: Literal[1, 3] | None = None
    phase_rotation: str | None = None
    min_current_a: Decimal | None = Field(default=None, ge=0, le=1000, decimal_places=1)
    max_current_a: Amps | None = None
    min_power_w: int | None = Field(default=None, ge=0, le=10_000_000)
    max_power_w: Watts | None = None
    efficiency: Decimal | None = Field(default=None, gt=0, le=1, decimal_places=3)
    parking_spot: str | None = Field(default=None, min_length=1, max_length=32)

    @model_validator(mode="after")
    def _electrical(self) -> ConnectorSpec:
        if self.dc:
            if self.max_power_w is None:
                raise ValueError("a DC connector needs max_power_w")
            if self.min_power_w is not None and self.min_power_w > self.max_power_w:
                raise ValueError("min_power_w is above max_power_w")
        else:
            if self.max_current_a is None:
                raise ValueError("an AC connector needs max_current_a")
            if self.efficiency is not None:
                raise ValueError("efficiency applies to DC connectors only")
            if self.min_current_a is not None and self.min_current_a > self.max_current_a:
                raise ValueError("min_current_a is above max_current_a")
        allowed = THREE_PHASE_ROTATIONS if self.effective_phases == 3 else SINGLE_PHASE_ROTATIONS
        if self.phase_rotation is not None and self.phase_rotation not in allowed:
            raise ValueError(
                f"phase_rotation {self.phase_rotation!r} does not fit a {self.effective_phases}-phase connector; "
                f"use one of {', '.join(allowed)}"
            )
        return self

    @property
    def effective_phases(self) -> int:
        return self.phases if self.phases is not None else (3 if self.dc else 1)

    @property
    def effective_rotation(self) -> str:
        if self.phase_rotation:
            return self.phase_rotation
        return "RST" if self.effective_phases == 3 else "L1"

    @property
    def effective_min_current_a(self) -> Decimal:
        if self.min_current_a is not None:
            return self.min_current_a
        return Decimal("0") if self.dc else Decimal("6")  # IEC 61851: AC charging needs at least 6 A


class ChargerSpec(Spec):
    id: ChargePointId
    # 16+ characters: a charger's password is a generated secret (manage.py charger_password makes one).
    password: str | None = Field(default=None, min_length=16, max_length=40)
    password_hash: str | None = None
    circuit: Slug
    enabled: bool = True
    connectors: list[ConnectorSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _credentials(self) -> ChargerSpec:
        if not self.password and not self.password_hash:
            raise ValueError("a charger needs its Basic-auth password (OCPP security profile 1)")
        if self.password and self.password_hash:
            raise ValueError("give password or password_hash, not both")
        ids = [c.id for c in self.connectors]
        if len(set(ids)) != len(ids):
            raise ValueError("connector ids must be unique within a charger")
        return self


class UnitSpec(Spec):
    number: str = Field(min_length=1, max_length=32)
    parking_spots: list[str] = []


class PersonSpec(Spec):
    email: str
    name: str = Field(default="", max_length=200)
    unit: str | None = None
    roles: list[Literal["manager", "board", "resident"]] = Field(min_length=1)
    id_tags: list[IdTagValue] = []
    language: Literal["en", "es", "fr"] | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not EMAIL.match(value):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value.lower()

    @field_validator("id_tags")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        # OCPP idTags are case-insensitive; they are kept upper-case.
        return [tag.upper() for tag in value]

    @model_validator(mode="after")
    def _resident_has_unit(self) -> PersonSpec:
        if "resident" in self.roles and not self.unit:
            raise ValueError("a resident needs a unit")
        if self.id_tags and "resident" not in self.roles:
            raise ValueError("id_tags belong to residents; add the resident role and a unit")
        return self


class TariffVersionSpec(Spec):
    """One set of prices. ``elements`` and ``monthly_fee`` are checked by apps.billing.pricing.parse_tariff."""

    effective_from: datetime | date  # a date: local midnight in the building's time zone
    elements: list[Any] = Field(min_length=1)
    monthly_fee: Any = None

    def document(self) -> dict[str, Any]:
        data: dict[str, Any] = {"elements": self.elements}
        if self.monthly_fee is not None:
            data["monthly_fee"] = self.monthly_fee
        return data


class TariffTargetSpec(Spec):
    """Who pays the tariff, where: ``who`` (or a named ``group``), on a charger (one or all of its connectors)."""

    who: Literal["everyone", "residents", "visitors"] | None = None
    group: Slug | None = None
    charger: ChargePointId | None = None
    connector: int | None = Field(default=None, ge=1, le=99)

    @model_validator(mode="after")
    def _one_audience(self) -> TariffTargetSpec:
        if self.who is not None and self.group is not None:
            raise ValueError("give who or group, not both")
        if self.connector is not None and self.charger is None:
            raise ValueError("a connector needs its charger")
        return self

    @property
    def audience(self) -> str:
        return "group" if self.group else (self.who or "everyone")


class TariffSpec(Spec):
    code: Slug
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    versions: list[TariffVersionSpec] = []
    applies_to: list[TariffTargetSpec] = []


class TariffGroupSpec(Spec):
    code: Slug
    name: str = Field(min_length=1, max_length=200)
    members: list[str] = []  # residents' e-mails

    @field_validator("members")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        for email in value:
            if not EMAIL.match(email):
                raise ValueError(f"{email!r} is not an e-mail address")
        return [email.lower() for email in value]


class BillingSpec(Spec):
    prices_include_tax: bool = False


class CommissioningSpec(Spec):
    company: CompanySpec
    condominium: CondominiumSpec
    electrical: ElectricalSpec
    chargers: list[ChargerSpec] = []
    units: list[UnitSpec] = []
    people: list[PersonSpec] = []
    billing: BillingSpec = BillingSpec()
    tariff_groups: list[TariffGroupSpec] = []
    tariffs: list[TariffSpec] = []


class CommissioningError(FileRefused):
    """The file is refused. ``problems`` says what and where; nothing was applied."""


def load(text: str, source: str = "<file>") -> CommissioningSpec:
    """Parse and validate a commissioning file, or raise CommissioningError listing every problem."""
    spec, root = parse(
        text, CommissioningSpec, source, error=CommissioningError, docs="docs/commissioning.md",
        mapping_hint="the file must be a mapping with company, condominium, ...",
    )
    problems = [Problem(p.path, p.message, line_of(root, p.path)) for p in cross_check(spec)]
    if problems:
        raise CommissioningError(source, problems)
    return spec


def cross_check(spec: CommissioningSpec) -> list[Problem]:
    """Checks that span several parts of the file: references, uniqueness, the circuit tree."""
    problems: list[Problem] = []
    circuits: dict[str, str | None] = {SUPPLY: None} | {c.id: c.parent for c in spec.electrical.circuits}
    seen: set[str] = set()
    for i, circuit in enumerate(spec.electrical.circuits):
        if circuit.id in seen:
            problems.append(Problem(("electrical", "circuits", i, "id"), f"circuit {circuit.id!r} is defined twice"))
        seen.add(circuit.id)
        if circuit.parent not in circuits:
            problems.append(
                Problem(("electrical", "circuits", i, "parent"), f"no circuit {circuit.parent!r} (nor 'supply')")
            )
    for i, circuit in enumerate(spec.electrical.circuits):
        node: str | None = circuit.parent
        steps = 0
        while node is not None and node in circuits and steps <= len(circuits):
            node, steps = circuits[node], steps + 1
        if steps > len(circuits):
            problems.append(Problem(("electrical", "circuits", i, "parent"), "the circuits form a loop"))
    meter = spec.electrical.site_meter
    if meter is not None and meter.circuit not in circuits:
        problems.append(Problem(("electrical", "site_meter", "circuit"), f"no circuit {meter.circuit!r}"))

    charger_ids: dict[str, int] = {}
    spot_connectors: dict[str, tuple[int, int]] = {}
    for i, charger in enumerate(spec.chargers):
        key = charger.id.lower()
        if key in charger_ids:
            problems.append(Problem(("chargers", i, "id"), f"charger {charger.id!r} is listed twice"))
        charger_ids[key] = i
        if charger.circuit not in circuits:
            problems.append(Problem(("chargers", i, "circuit"), f"no circuit {charger.circuit!r} (nor 'supply')"))
        for j, connector in enumerate(charger.connectors):
            if connector.phases == 3 and spec.electrical.supply.phases == 1:
                problems.append(
                    Problem(
                        ("chargers", i, "connectors", j, "phases"), "a three-phase connector on a single-phase supply"
                    )
                )
            spot = connector.parking_spot
            if spot is not None:
                if spot in spot_connectors:
                    a, b = spot_connectors[spot]
                    problems.append(
                        Problem(
                            ("chargers", i, "connectors", j, "parking_spot"),
                            f"parking spot {spot!r} already has chargers[{a}].connectors[{b}]",
                        )
                    )
                spot_connectors[spot] = (i, j)
    if meter is not None and meter.ocpp is not None and meter.ocpp.charger.lower() not in charger_ids:
        problems.append(Problem(("electrical", "site_meter", "ocpp", "charger"), f"no charger {meter.ocpp.charger!r}"))

    unit_numbers: set[str] = set()
    spot_units: dict[str, str] = {}
    for i, unit in enumerate(spec.units):
        if unit.number in unit_numbers:
            problems.append(Problem(("units", i, "number"), f"unit {unit.number!r} is listed twice"))
        unit_numbers.add(unit.number)
        for j, spot in enumerate(unit.parking_spots):
            if spot in spot_units:
                problems.append(
                    Problem(
                        ("units", i, "parking_spots", j),
                        f"parking spot {spot!r} already belongs to unit {spot_units[spot]!r}",
                    )
                )
            spot_units[spot] = unit.number

    emails: set[str] = set()
    tags: dict[str, str] = {}
    for i, person in enumerate(spec.people):
        if person.email in emails:
            problems.append(Problem(("people", i, "email"), f"{person.email} is listed twice"))
        emails.add(person.email)
        for j, tag in enumerate(person.id_tags):
            if tag in tags:
                problems.append(Problem(("people", i, "id_tags", j), f"id tag {tag} already belongs to {tags[tag]}"))
            tags[tag] = person.email

    problems += _check_tariffs(spec)
    return problems


def _check_tariffs(spec: CommissioningSpec) -> list[Problem]:
    """Prices (apps.billing.pricing), versions in order, and targets that exist and are given once."""
    problems: list[Problem] = []
    residents = {p.email for p in spec.people if "resident" in p.roles}
    groups: set[str] = set()
    grouped: dict[str, str] = {}
    for i, group in enumerate(spec.tariff_groups):
        if group.code in groups:
            problems.append(Problem(("tariff_groups", i, "code"), f"group {group.code!r} is listed twice"))
        groups.add(group.code)
        for j, email in enumerate(group.members):
            if email not in residents:
                problems.append(Problem(("tariff_groups", i, "members", j), f"{email} is not a resident in this file"))
            elif email in grouped:
                problems.append(Problem(("tariff_groups", i, "members", j),
                                        f"{email} is already in group {grouped[email]!r} (one group per resident)"))
            grouped.setdefault(email, group.code)
    connectors = {c.id.lower(): {k.id for k in c.connectors} for c in spec.chargers}
    codes: set[str] = set()
    targets: dict[tuple[str, str, str, int | None], str] = {}
    for i, tariff in enumerate(spec.tariffs):
        if tariff.code in codes:
            problems.append(Problem(("tariffs", i, "code"), f"tariff {tariff.code!r} is listed twice"))
        codes.add(tariff.code)
        moments: set[datetime | date] = set()
        for j, version in enumerate(tariff.versions):
            where: tuple[str | int, ...] = ("tariffs", i, "versions", j)
            if version.effective_from in moments:
                problems.append(Problem((*where, "effective_from"), "two versions take effect at the same moment"))
            moments.add(version.effective_from)
            if isinstance(version.effective_from, datetime) and version.effective_from.tzinfo is None:
                problems.append(Problem((*where, "effective_from"),
                                        "give a date, or a date and time with its UTC offset"))
            try:
                parse_tariff(version.document(), currency=spec.condominium.currency)
            except TariffInvalid as invalid:
                problems += [Problem((*where, *p.path), p.message) for p in invalid.problems]
        if tariff.applies_to and not tariff.versions:
            problems.append(Problem(("tariffs", i, "versions"), "a tariff that applies to someone needs prices"))
        for j, target in enumerate(tariff.applies_to):
            where = ("tariffs", i, "applies_to", j)
            if target.group is not None and target.group not in groups:
                problems.append(Problem((*where, "group"), f"no tariff group {target.group!r} (see tariff_groups)"))
            numbers: list[int | None] = [None]
            if target.charger is not None:
                known = connectors.get(target.charger.lower())
                if known is None:
                    problems.append(Problem((*where, "charger"), f"no charger {target.charger!r} in this file"))
                    continue
                if target.connector is not None and target.connector not in known:
                    problems.append(Problem((*where, "connector"),
                                            f"charger {target.charger!r} has no connector {target.connector}"))
                    continue
                numbers = [target.connector] if target.connector is not None else [*sorted(known)]
            for number in numbers:
                key = (target.audience, target.group or "", (target.charger or "").lower(), number)
                if key in targets and targets[key] != tariff.code:
                    problems.append(Problem(where, f"already given tariff {targets[key]!r}: one tariff per target"))
                targets.setdefault(key, tariff.code)
    return problems


__all__ = ["CommissioningError", "CommissioningSpec", "Problem", "cross_check", "dump", "load", "with_lines"]
