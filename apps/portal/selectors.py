"""What a resident's pages read, in the building's schema: their households, the connectors they may use, their
sessions under way (with the tariff in force, read once), recent sessions with their cost, statements, cards.

Everything is scoped by the resident rows of the user in this building (``households``): a user who lives in
another building has none here, and gets nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Q, QuerySet

from apps.billing import pricing
from apps.billing.models import SessionCharge
from apps.billing.selectors import building_billing, pricing_tariff, tariff_for, version_in_force
from apps.billing.services import connector_max_power_w
from apps.buildings.models import IdTag, Resident
from apps.charging.models import ChargingSession, Connector
from apps.loadbalancing.models import BalancingRun
from apps.ocpp import live
from apps.payments.models import SavedPaymentMethod
from apps.payments.selectors import resident_balance
from apps.portal import cards
from apps.statements.models import Statement
from apps.visitors import wording
from apps.visitors.services import tariff_words

RECENT_SESSIONS = 10


def households(user) -> list[Resident]:
    """The user's active resident rows here (one per unit they live in), with their units."""
    return list(Resident.objects.filter(user=user, is_active=True).select_related("unit").order_by("unit__number"))


def connector_label(charge_point_id: str, number: int, spot: str) -> str:
    name = f"{charge_point_id} #{number}"
    return f"{name} ({spot})" if spot else name


@dataclass(frozen=True)
class Place:
    """A connector the resident may start a session on: one of their unit's spots, or a shared one."""

    pk: int
    key: str
    charge_point_id: str
    number: int
    spot: str
    unit_id: int | None  # the unit whose spot it is (None: shared by the building)
    mine: bool  # on one of the households' own spots

    @property
    def label(self) -> str:
        return connector_label(self.charge_point_id, self.number, self.spot)


def places(residents: Iterable[Resident]) -> list[Place]:
    """Connectors on the households' spots first, then the building's shared ones (no spot, or a spot of no unit).
    One query."""
    units = {r.unit_id for r in residents}
    if not units:
        return []
    rows = (Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True,
                                     charge_point__enabled=True)
            .filter(Q(parking_spot__unit_id__in=units) | Q(parking_spot__isnull=True)
                    | Q(parking_spot__unit__isnull=True))
            .values("pk", "connector_id", "charge_point__charge_point_id", "parking_spot__label",
                    "parking_spot__unit_id"))
    found = [Place(pk=r["pk"], key=f"{r['charge_point__charge_point_id']}#{r['connector_id']}",
                   charge_point_id=r["charge_point__charge_point_id"], number=r["connector_id"],
                   spot=r["parking_spot__label"] or "", unit_id=r["parking_spot__unit_id"],
                   mine=r["parking_spot__unit_id"] in units) for r in rows]
    return sorted(found, key=lambda p: (not p.mine, p.charge_point_id, p.number))


def place(residents: Iterable[Resident], charge_point_id: str, number: int) -> Place | None:
    return next((p for p in places(residents) if (p.charge_point_id, p.number) == (charge_point_id, number)), None)


def open_sessions(resident_ids: Iterable[int]) -> list[cards.SessionInfo]:
    """The households' sessions under way (one query)."""
    rows = (ChargingSession.objects.filter(resident_id__in=list(resident_ids), stopped_at__isnull=True,
                                           connector__isnull=False)
            .order_by("started_at", "pk")
            .values("pk", "transaction_id", "started_at", "start_received_at", "id_tag", "connector_id",
                    "charge_point__charge_point_id", "connector__connector_id", "connector__parking_spot__label"))
    return [cards.SessionInfo(
        session_pk=r["pk"], transaction_id=r["transaction_id"],
        key=f"{r['charge_point__charge_point_id']}#{r['connector__connector_id']}",
        label=connector_label(r["charge_point__charge_point_id"], r["connector__connector_id"],
                              r["connector__parking_spot__label"] or ""),
        started_at=r["started_at"] or r["start_received_at"], id_tag=r["id_tag"]) for r in rows]


def session_pricing(session_pk: int) -> cards.SessionPricing | None:
    """The tariff that applies to a session under way, at its start (None when no tariff applies)."""
    session = ChargingSession.objects.select_related("connector").filter(pk=session_pk).first()
    if session is None or session.connector is None:
        return None
    choice = tariff_for(connector_pk=session.connector_id, resident_id=session.resident_id)
    start = session.started_at or session.start_received_at
    version = version_in_force(choice.tariff, start) if choice is not None and start is not None else None
    if version is None:
        return None
    building = building_billing()
    try:
        tariff = pricing_tariff(version)
    except pricing.TariffInvalid:
        return None
    return cards.SessionPricing(tariff=tariff, tz=building.timezone, prices_include_tax=building.prices_include_tax,
                                max_power_w=connector_max_power_w(session.connector))


def run_limits(run_id: int | None) -> dict[str, dict]:
    """Each connector's limit and reason in the run named (the latest when None): ``{"CP#1": {"a": ..}}``."""
    runs = BalancingRun.objects.order_by("-started_at", "-id").only("id", "limits")
    run = runs.filter(pk=run_id).first() if run_id is not None else runs.first()
    return dict(run.limits) if run is not None else {}


def connector_states(keys: Iterable[str], schema_name: str,
                     states: dict[str, live.ChargerLive]) -> dict[str, cards.ConnectorState]:
    """The live state of the connectors named ("CP#1"), from the chargers' states read from Redis."""
    found = {}
    for key in keys:
        charge_point_id, _, number = key.rpartition("#")
        charger = states.get(charge_point_id)
        if charger is None:
            continue
        state = charger.connector(int(number))
        found[key] = cards.ConnectorState(
            online=charger.connected and charger.schema == schema_name, status=state.status, power_w=state.power_w,
            session_energy_wh=state.session_energy_wh, transaction_id=state.transaction_id)
    return found


def session_cards(sessions: list[cards.SessionInfo], schema_name: str, *, now: datetime,
                  prices: dict[int, cards.SessionPricing | None] | None = None,
                  limits: dict[str, dict] | None = None) -> list[cards.SessionCard]:
    """The cards of the sessions, read now (the pricing and the limits are read when not given)."""
    if not sessions:
        return []
    prices = prices if prices is not None else {s.session_pk: session_pricing(s.session_pk) for s in sessions}
    limits = limits if limits is not None else run_limits(None)
    keys = [s.key for s in sessions]
    states = connector_states(keys, schema_name,
                              live.read_building_live({k.rpartition("#")[0] for k in keys}))
    return [cards.session_card(s, states.get(s.key), limits.get(s.key, {}), prices.get(s.session_pk), now=now)
            for s in sessions]


@dataclass(frozen=True)
class PastSession:
    pk: int
    label: str
    started_at: datetime | None
    stopped_at: datetime | None
    energy_wh: int
    total: Decimal | None
    currency: str
    held: bool  # being checked before it is billed


def recent_sessions(resident_ids: Iterable[int], limit: int = RECENT_SESSIONS) -> list[PastSession]:
    """The households' latest finished sessions with what each cost (one query)."""
    rows = (ChargingSession.objects.filter(resident_id__in=list(resident_ids), stopped_at__isnull=False)
            .order_by("-stopped_at", "-pk")
            .values("pk", "started_at", "stopped_at", "energy_wh", "charge_point__charge_point_id",
                    "connector_number", "connector__parking_spot__label", "charge__total", "charge__currency",
                    "charge__status")[:limit])
    return [PastSession(
        pk=r["pk"], label=connector_label(r["charge_point__charge_point_id"], r["connector_number"],
                                          r["connector__parking_spot__label"] or ""),
        started_at=r["started_at"], stopped_at=r["stopped_at"], energy_wh=r["energy_wh"],
        total=r["charge__total"] if r["charge__status"] == SessionCharge.Status.PRICED else None,
        currency=r["charge__currency"] or "", held=r["charge__status"] == SessionCharge.Status.HELD) for r in rows]


def statements(resident_ids: Iterable[int]) -> QuerySet[Statement]:
    """The households' finalized statements and credit notes, newest first."""
    return (Statement.objects.filter(resident_id__in=list(resident_ids)).exclude(status=Statement.Status.DRAFT)
            .select_related("period").order_by("-issued_on", "-pk"))


def statement_of(resident_ids: Iterable[int], statement_pk: int) -> Statement | None:
    return statements(resident_ids).filter(pk=statement_pk).first()


def id_tags(resident_ids: Iterable[int]) -> QuerySet[IdTag]:
    return IdTag.objects.filter(resident_id__in=list(resident_ids)).order_by("status", "id_tag")


def tariff_in_force(resident: Resident, connector_pk: int | None, at: datetime) -> tuple[str, tuple[str, ...]]:
    """The tariff a resident pays on a connector (their own spot's, or the building's), in sentences."""
    choice = tariff_for(connector_pk=connector_pk, resident_id=resident.pk)
    version = version_in_force(choice.tariff, at) if choice is not None else None
    if choice is None or version is None:
        return "", ()
    try:
        return choice.tariff.name, wording.describe(pricing_tariff(version), tariff_words())
    except pricing.TariffInvalid:
        return choice.tariff.name, ()


@dataclass(frozen=True)
class Account:
    balance: Decimal  # what the household owes (positive) or has in credit (negative)
    currency: str
    autopay_card: SavedPaymentMethod | None
    cards: tuple[SavedPaymentMethod, ...]  # the saved cards, the autopay one first


def account(resident: Resident) -> Account:
    cards = tuple(SavedPaymentMethod.objects.filter(resident=resident, removed_at__isnull=True)
                  .order_by("-is_default", "-created_at"))
    autopay = next((c for c in cards if c.is_default), None)
    return Account(resident_balance(resident_id=resident.pk), building_billing().currency, autopay, cards)
