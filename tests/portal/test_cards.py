"""The resident's session card, pure: the cost so far is the tariff applied to what was delivered until now, the
live numbers count only while the charger reports this very session, the limit and its reason are the balancer's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from apps.billing import pricing
from apps.portal import cards

LA = ZoneInfo("America/Los_Angeles")
START = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)  # 10:00 in Los Angeles: the day price
TARIFF = pricing.parse_tariff({
    "elements": [
        {"restrictions": {"start_time": "22:00", "end_time": "07:00"},
         "price_components": [{"type": "ENERGY", "price": "0.18"}]},
        {"price_components": [{"type": "ENERGY", "price": "0.32"}]},
    ],
}, currency="USD")
PRICE = cards.SessionPricing(tariff=TARIFF, tz=LA, prices_include_tax=False, max_power_w=7360)
SESSION = cards.SessionInfo(session_pk=7, transaction_id=41, key="CP#1", label="CP #1 (P01)", started_at=START,
                            id_tag="APP1")


def state(**changes) -> cards.ConnectorState:
    values = {"online": True, "status": "Charging", "power_w": Decimal("7245"), "session_energy_wh": 5125,
              "transaction_id": 41} | changes
    return cards.ConnectorState(**values)


def test_the_cost_so_far_is_the_tariff_applied_to_the_energy_delivered_until_now():
    card = cards.session_card(SESSION, state(), {"a": "16", "sentence": "Shared with 3 cars", "why": "node"}, PRICE,
                              now=START + timedelta(minutes=45))
    assert card.energy_kwh == Decimal("5.13") and card.power_kw == Decimal("7.2")
    assert card.cost == Decimal("1.64") and card.cost_text() == "$1.64"  # 5.125 kWh x 0.32, rounded once
    assert card.cost_text("es") == "1,64\xa0US$" and card.cost_text("fr") == "1,64\xa0$US"  # the reader's way
    assert (card.limit, card.sentence, card.why) == ("16 A", "Shared with 3 cars", "node")
    assert card.can_stop and card.online


def test_at_night_the_night_price_applies():
    night = START + timedelta(hours=13)  # 23:00 in Los Angeles
    later = cards.SessionInfo(**{**SESSION.__dict__, "started_at": night})
    card = cards.session_card(later, state(session_energy_wh=7000), {}, PRICE, now=night + timedelta(hours=1))
    assert card.cost == Decimal("1.26") and card.limit == "" and card.sentence == ""


def test_numbers_of_another_session_on_the_connector_are_not_shown():
    card = cards.session_card(SESSION, state(transaction_id=42), {}, PRICE, now=START + timedelta(minutes=5))
    assert card.energy_kwh is None and card.power_kw is None and card.cost is None and card.cost_text() == ""


def test_without_a_tariff_or_a_reading_there_is_no_cost_rather_than_zero():
    # More than the connector can deliver in the time: doubtful, so no figure (the statement holds it for review).
    assert cards.session_card(SESSION, state(session_energy_wh=10_000), {}, PRICE,
                              now=START + timedelta(minutes=30)).cost is None
    assert cards.session_card(SESSION, state(), {}, None, now=START).cost is None
    card = cards.session_card(SESSION, state(session_energy_wh=None), {}, PRICE, now=START)
    assert card.cost is None and card.energy_kwh is None
    assert cards.session_card(SESSION, None, {}, PRICE, now=START).online is False


def test_a_session_the_charger_has_not_confirmed_cannot_be_stopped_from_the_phone():
    pending = cards.SessionInfo(**{**SESSION.__dict__, "transaction_id": None})
    assert cards.session_card(pending, state(), {}, PRICE, now=START).can_stop is False


def test_a_power_limit_is_shown_in_watts_and_the_wire_carries_exact_strings():
    card = cards.session_card(SESSION, state(), {"w": 11000, "sentence": "DC share"}, PRICE,
                              now=START + timedelta(minutes=45))
    assert card.limit == "11000 W"
    wire = cards.as_json([card])["sessions"]["7"]
    assert wire == {"online": True, "status": "Charging", "power_kw": "7.2", "energy_kwh": "5.13", "cost": "1.64",
                    "cost_text": "$1.64", "currency": "USD", "limit": "11000 W", "sentence": "DC share"}
