"""What the simulator reads from the platform: a building's chargers, connectors and residents' tags, and whose
card started a session."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from django.db.models import Prefetch, Q
from django.utils import timezone

from apps.buildings.models import IdTag
from apps.charging.models import ChargePoint, ChargingSession, Connector
from apps.commissioning.schema import load as load_commissioning
from apps.core.tenants import in_schema
from apps.simulator.meter_registers import ModbusMeterSettings, modbus_settings
from apps.simulator.model import ChargerConfig, ConnectorConfig
from apps.tenancy.models import Condominium


class SetupError(Exception):
    """The simulator cannot run for this building; the message says why and what to do."""


@dataclass(frozen=True)
class Building:
    slug: str
    schema_name: str
    chargers: list[ChargerConfig]
    id_tags: list[str]


def building(slug: str, charger_ids: list[str] | None = None) -> Building:
    """Every commissioned charger of the building (removed ones left out) and its residents' active tags."""
    condo = Condominium.objects.filter(slug=slug).first()
    if condo is None:
        raise SetupError(f"no condominium {slug!r}; commission it first (manage.py commission FILE)")
    with in_schema(condo.schema_name):
        live_connectors = Connector.objects.filter(removed_at__isnull=True).order_by("connector_id")
        chargers = (ChargePoint.objects.filter(removed_at__isnull=True).select_related("circuit")
                    .prefetch_related(Prefetch("connectors", queryset=live_connectors)).order_by("charge_point_id"))
        if charger_ids:
            chargers = chargers.filter(charge_point_id__in=charger_ids)
        configs = []
        for cp in chargers:
            connectors = tuple(
                ConnectorConfig(
                    connector_id=c.connector_id, phases=c.phases, max_current_a=c.max_current_a,
                    min_current_a=c.min_current_a, dc=c.is_dc, max_power_w=c.max_power_w,
                    min_power_w=c.min_power_w, voltage_v=cp.circuit.voltage_v,
                )
                for c in cp.connectors.all()
            )
            if connectors:
                configs.append(ChargerConfig(cp.charge_point_id, connectors))
        now = timezone.now()
        tags = list(
            IdTag.objects.filter(status=IdTag.Status.ACTIVE, resident__is_active=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .order_by("id_tag").values_list("id_tag", flat=True)
        )
    if charger_ids:
        missing = set(charger_ids) - {c.charge_point_id for c in configs}
        if missing:
            raise SetupError(f"{slug} has no commissioned charger {', '.join(sorted(missing))}")
    if not configs:
        raise SetupError(f"{slug} has no commissioned charger with a connector")
    return Building(slug, condo.schema_name, configs, tags)


def charger_passwords(path: Path, chargers: list[ChargerConfig]) -> dict[str, str]:
    """The chargers' Basic-auth passwords from the building's commissioning file (the database keeps hashes)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SetupError(f"cannot read the commissioning file {path}: {error.strerror}; "
                         "give the right one with --commissioning-file") from None
    spec = load_commissioning(text, source=str(path))
    in_file = {c.id.lower(): (i, c) for i, c in enumerate(spec.chargers)}
    passwords: dict[str, str] = {}
    problems = []
    for charger in chargers:
        found = in_file.get(charger.charge_point_id.lower())
        if found is None:
            problems.append(f"{path}: no charger {charger.charge_point_id!r} in chargers; "
                            "the simulator needs its password")
        elif not found[1].password:
            problems.append(f"{path}: chargers[{found[0]}] ({charger.charge_point_id}) has only password_hash; "
                            "the simulator needs the password itself (add password: ...)")
        else:
            passwords[charger.charge_point_id] = found[1].password
    if problems:
        raise SetupError("\n".join(problems))
    return passwords


@dataclass(frozen=True)
class Wired:
    """What the closed loop observes a building with: its tree, its guns' wiring and its site meter."""

    nodes: list  # closedloop.NodeLimits, root (supply) first
    wiring: Mapping[str, object]  # "CP#n" -> closedloop.Wiring
    meter_key: str | None
    meter_node: str | None
    meter_token: str | None  # an HTTP-push meter's
    host: str
    meter_modbus: ModbusMeterSettings | None = None  # a Modbus TCP meter's host, port, unit id and register map


def wired(slug: str, commissioning_path: Path) -> Wired:
    """The building's electrical tree (rating, limit = rating x derate - margin, power), each gun's node and
    phase rotation, its site meter (an HTTP-push meter's token from the commissioning file, a Modbus TCP meter's
    settings as the poller reads them) and its host name."""
    from apps.electrical.models import Circuit, SiteMeter
    from apps.simulator.closedloop import NodeLimits, Wiring
    from apps.tenancy.models import Domain

    condo = Condominium.objects.filter(slug=slug).first()
    if condo is None:
        raise SetupError(f"no condominium {slug!r}; commission it first (manage.py commission FILE)")
    domain = Domain.objects.filter(tenant=condo).order_by("-is_primary", "domain").first()
    if domain is None:
        raise SetupError(f"{slug} has no domain: the site meter pushes to the building's own host")
    with in_schema(condo.schema_name):
        circuits = list(Circuit.objects.filter(removed_at__isnull=True).select_related("parent"))
        circuits.sort(key=lambda c: c.parent_id is not None)
        nodes = []
        for c in circuits:
            rating = tuple(c.max_current_a)
            limit = tuple(a * c.derate - c.margin_a for a in rating)
            nodes.append(NodeLimits(c.key, rating, limit, max_power_w=c.max_power_w,  # type: ignore[arg-type]
                                    parent=c.parent.key if c.parent else None, voltage_v=c.voltage_v))
        wiring = {
            f"{row.charge_point.charge_point_id}#{row.connector_id}": Wiring(
                f"{row.charge_point.charge_point_id}#{row.connector_id}", row.charge_point.circuit.key,
                row.phases, row.phase_rotation)
            for row in Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True)
            .select_related("charge_point__circuit")
        }
        meter = SiteMeter.objects.filter(removed_at__isnull=True).select_related("circuit").first()
    token = None
    if meter is not None and meter.source == "api":
        spec = load_commissioning(commissioning_path.read_text(encoding="utf-8"), source=str(commissioning_path))
        site = spec.electrical.site_meter
        token = site.token if site is not None else None
    modbus = None
    if meter is not None and meter.source == "modbus":
        try:
            modbus = modbus_settings(meter.settings.get("modbus") or {}, meter.circuit.voltage_v)
        except (KeyError, ValueError, TypeError):
            raise SetupError(f"{slug}: site meter {meter.key} has unusable Modbus settings "
                             f"{meter.settings.get('modbus')!r}") from None
    return Wired(nodes, wiring, meter.key if meter else None, meter.circuit.key if meter else None, token,
                 domain.domain, modbus)


@dataclass(frozen=True)
class SessionOwner:
    session_pk: int
    user_id: int | None  # the login of the resident whose card started it; None: not an active resident's card


def session_of_transaction(schema_name: str, charge_point_id: str, transaction_id: int) -> SessionOwner | None:
    """The platform's session for a charger's transactionId, and whose it is (None: the platform has none)."""
    with in_schema(schema_name):
        row = (ChargingSession.objects.filter(transaction_id=transaction_id,
                                              charge_point__charge_point_id=charge_point_id)
               .values("pk", "resident__user_id", "resident__is_active").first())
    if row is None:
        return None
    return SessionOwner(row["pk"], row["resident__user_id"] if row["resident__is_active"] else None)
