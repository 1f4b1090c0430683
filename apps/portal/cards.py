"""What a resident sees of a session under way: power, energy, cost so far, the limit the balancer set and why.
Pure: no Django, no I/O, no clock (``now`` is an input).

    card = session_card(session, now_state, balance, pricing, now=now)
    card.energy_kwh, card.cost, card.limit, card.sentence      # Decimal("7.42"), Decimal("2.37"), "16 A", "..."
    as_json([card])                                             # what the live view sends the page

The cost so far is the tariff applied to what the session has delivered up to ``now``, as if it stopped now
(apps.billing.pricing.quote over the time since the start): the statement prices the finished session from its
meter readings, so the page says "so far" and never claims to be the bill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from apps.billing import pricing
from apps.console.board import limit_text
from apps.statements.money import display

TENTH = Decimal("0.1")
HUNDREDTH = Decimal("0.01")


@dataclass(frozen=True)
class SessionInfo:
    """A session under way of one of the resident's households, as the database knows it."""

    session_pk: int
    transaction_id: int | None
    key: str  # the connector, "CHARGER#1"
    label: str  # the connector for people: "TEST-MAPLE-1 #1 (P01)"
    started_at: datetime
    id_tag: str


@dataclass(frozen=True)
class ConnectorState:
    """The connector's live state (apps.ocpp.live): None where the charger has not reported it."""

    online: bool
    status: str
    power_w: Decimal | None
    session_energy_wh: int | None
    transaction_id: int | None


@dataclass(frozen=True)
class SessionPricing:
    """The tariff in force for this session, read once when it starts (apps/portal/selectors.py)."""

    tariff: pricing.TariffVersion
    tz: tzinfo
    prices_include_tax: bool
    max_power_w: int | None


@dataclass(frozen=True)
class SessionCard:
    key: str
    session_pk: int
    label: str
    started_at: datetime
    online: bool
    status: str
    power_kw: Decimal | None
    energy_kwh: Decimal | None
    cost: Decimal | None
    currency: str
    limit: str  # "16 A", "11000 W" or "" (the balancer has set none)
    sentence: str  # why, in words ("The cabinet's 20 kW is shared by 4 cars")
    why: str  # the binding constraint's code ("node-power", "connector", ...)
    can_stop: bool

    def cost_text(self, locale: str = "en") -> str:
        return display(self.cost, self.currency, locale) if self.cost is not None else ""


def cost_so_far(price: SessionPricing | None, *, started_at: datetime, now: datetime,
                energy_wh: int | None) -> tuple[Decimal | None, str]:
    """The session's price had it stopped at ``now`` with ``energy_wh`` delivered; (None, "") when unknown."""
    if price is None or energy_wh is None or energy_wh < 0:
        return None, ""
    duration = max(now - started_at, timedelta(0))
    try:
        priced = pricing.quote(price.tariff, start=started_at, duration=duration, energy_wh=energy_wh, tz=price.tz,
                               prices_include_tax=price.prices_include_tax, max_power_w=price.max_power_w)
    except pricing.TariffInvalid:
        return None, ""
    if priced.status != "priced":  # doubtful (more energy than the connector can deliver...): no figure
        return None, ""
    return priced.total, priced.currency


def session_card(session: SessionInfo, state: ConnectorState | None, balance: Mapping[str, Any],
                 price: SessionPricing | None, *, now: datetime) -> SessionCard:
    """The card of one session; the live numbers count only while the charger reports this very transaction."""
    same = state is not None and (state.transaction_id is None or session.transaction_id is None
                                  or state.transaction_id == session.transaction_id)
    power = state.power_w if state is not None and same else None
    energy = state.session_energy_wh if state is not None and same else None
    cost, currency = cost_so_far(price, started_at=session.started_at, now=now, energy_wh=energy)
    return SessionCard(
        key=session.key, session_pk=session.session_pk, label=session.label, started_at=session.started_at,
        online=bool(state is not None and state.online), status=state.status if state is not None else "",
        power_kw=(power / 1000).quantize(TENTH, ROUND_HALF_UP) if power is not None else None,
        energy_kwh=(Decimal(energy) / 1000).quantize(HUNDREDTH, ROUND_HALF_UP) if energy is not None else None,
        cost=cost, currency=currency, limit=limit_text(balance), sentence=str(balance.get("sentence") or ""),
        why=str(balance.get("why") or ""), can_stop=session.transaction_id is not None,
    )


def as_json(cards: Sequence[SessionCard], locale: str = "en") -> dict[str, Any]:
    """The cards as the live view sends them: numbers as strings (exact), by session; the cost also written for
    a reader of ``locale``."""
    def text(value: Decimal | None) -> str | None:
        return str(value) if value is not None else None

    return {"sessions": {str(c.session_pk): {
        "online": c.online, "status": c.status, "power_kw": text(c.power_kw), "energy_kwh": text(c.energy_kwh),
        "cost": text(c.cost), "cost_text": c.cost_text(locale), "currency": c.currency, "limit": c.limit,
        "sentence": c.sentence,
    } for c in cards}}
