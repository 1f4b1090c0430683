"""Who may see and do what with a building's payments, over HTTP on the building's own host. A resident sees
their own account only; refunds and adjustments are for the company's managers; a person of another building
or company gets 404 everywhere, and nothing changes."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest

from apps.buildings.models import Resident
from apps.core.tenants import in_schema
from apps.payments import selectors, services
from apps.payments.models import LedgerEntry, Payment, Refund
from tests import factories
from tests.payments.cards import paid

pytestmark = pytest.mark.usefixtures("stripe_settings")

MAPLE, OAK, HARBOR = "maple-court.localhost", "oak-tower.localhost", "harbor-view.localhost"


def post(client, host: str, path: str, data: dict | None = None):
    return client.post(path, json.dumps(data or {}), content_type="application/json", HTTP_HOST=host)


@pytest.fixture
def paid_payment(payer, maple_schema, localstripe) -> Payment:
    with in_schema(maple_schema):
        return paid(localstripe, payer, maple_schema, "50.00")


def outsiders(world, maple_schema):
    """A resident of another building of the same company, another company's manager and resident, and a
    resident of the same building (who must not see the payer's account)."""
    neighbour = factories.resident(world.maple, f"neighbour-{uuid.uuid4().hex[:8]}@maple.test", "101")
    return {"oak resident": world.oak_resident, "harbor manager": world.harbor_manager,
            "harbor resident": world.harbor_resident, "maple neighbour": neighbour}


def test_a_resident_sees_their_own_account_and_nobody_else_does(client, payer, paid_payment, world, maple_schema):
    client.force_login(payer.user)
    mine = client.get("/payments/account", HTTP_HOST=MAPLE)
    assert mine.status_code == 200
    data = mine.json()
    assert data["balance"] == "-50.00" and data["currency"] == "USD"
    assert [(p["id"], p["amount"], p["status"]) for p in data["payments"]] == [(paid_payment.pk, "50.00", "succeeded")]
    assert [(c["brand"], c["last4"], c["default"]) for c in data["cards"]] == [("visa", "4242", True)]
    assert client.get("/payments/account", HTTP_HOST=OAK).status_code == 404
    for who, user in outsiders(world, maple_schema).items():
        client.force_login(user)
        for host in (MAPLE, OAK, HARBOR):
            response = client.get("/payments/account", HTTP_HOST=host)
            assert response.status_code in (200, 404), who
            assert str(paid_payment.pk) not in json.dumps(response.json()["payments"] if response.status_code == 200
                                                          else []), who
            if response.status_code == 200:
                assert response.json()["balance"] == "0.00" and response.json()["payments"] == [], who
    client.force_login(world.maple_board)  # board members have no account of their own here
    assert client.get("/payments/account", HTTP_HOST=MAPLE).status_code == 404
    client.logout()
    assert client.get("/payments/account", HTTP_HOST=MAPLE).status_code == 302


def test_only_the_company_s_managers_refund_and_adjust(client, payer, paid_payment, world, maple_schema):
    refund_url = f"/payments/{paid_payment.pk}/refunds"
    adjust_url = f"/payments/residents/{payer.pk}/adjustments"
    for who, user in {**outsiders(world, maple_schema), "the payer": payer.user, "maple board": world.maple_board}.items():
        client.force_login(user)
        for host in (MAPLE, OAK, HARBOR):
            assert post(client, host, refund_url, {"amount": "5.00", "reason": "x"}).status_code == 404, (who, host)
            assert post(client, host, adjust_url, {"amount": "-5.00", "reason": "x"}).status_code == 404, (who, host)
    with in_schema(maple_schema):
        assert not Refund.objects.filter(payment=paid_payment).exists()
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("-50.00")

    client.force_login(world.acme_manager)
    made = post(client, MAPLE, refund_url, {"amount": "5.00", "reason": "idle fee waived"})
    assert made.status_code == 201 and made.json()["status"] == "succeeded" and made.json()["amount"] == "5.00"
    too_much = post(client, MAPLE, refund_url, {"amount": "45.01", "reason": "more"})
    assert too_much.status_code == 400 and "more than the 45.00 USD left" in too_much.json()["error"]
    assert post(client, MAPLE, refund_url, {"amount": 1.5, "reason": "a float"}).status_code == 400
    assert post(client, MAPLE, refund_url, {"reason": "no amount"}).status_code == 400
    # The same ids on another building of the company are that building's rows (or none), never Maple's.
    assert post(client, OAK, adjust_url, {"amount": "1.00", "reason": "x"}).status_code in (201, 404)
    adjusted = post(client, MAPLE, adjust_url, {"amount": "-2.50", "reason": "goodwill"})
    assert adjusted.status_code == 201 and adjusted.json()["amount"] == "-2.50"
    with in_schema(maple_schema):
        assert list(LedgerEntry.objects.filter(resident=payer).exclude(kind="payment").values_list(
            "kind", "amount", "created_by_id", "reason").order_by("pk")) == [
            ("refund", Decimal("5.00"), world.acme_manager.pk, "idle fee waived"),
            ("adjustment", Decimal("-2.50"), world.acme_manager.pk, "goodwill")]


def test_a_resident_pays_their_balance_and_saves_a_card(client, payer, world, maple_schema, localstripe):
    client.force_login(payer.user)
    nothing = post(client, MAPLE, "/payments/pay-balance")
    assert nothing.status_code == 400 and "nothing to pay" in nothing.json()["error"]
    with in_schema(maple_schema):
        services.ledger_post(resident_id=payer.pk, kind="charge", amount=Decimal("31.20"), currency="USD",
                             entry_key=f"statement:test-{payer.pk}", reference=f"statement:test-{payer.pk}")
    started = post(client, MAPLE, "/payments/pay-balance")
    assert started.status_code == 200
    intent_id = started.json()["client_secret"].split("_secret_")[0]
    assert localstripe.payment_intent(intent_id)["amount"] == 3120
    assert started.json()["publishable_key"].startswith("pk_test_")
    # Asking again while it is open gives the same intent.
    assert post(client, MAPLE, "/payments/pay-balance").json()["client_secret"].startswith(intent_id)

    setup = post(client, MAPLE, "/payments/cards/setup").json()
    localstripe.confirm_setup(setup["setup_intent"], "4242424242424242")  # Stripe.js
    saved = post(client, MAPLE, "/payments/cards/save", {"setup_intent": setup["setup_intent"]})
    assert saved.status_code == 200 and saved.json() == {"brand": "visa", "last4": "4242", "default": True}
    # Someone else's setup is not theirs to save.
    other_user = factories.resident(world.maple, f"other-{uuid.uuid4().hex[:8]}@maple.test", "101")
    client.force_login(other_user)
    stolen = post(client, MAPLE, "/payments/cards/save", {"setup_intent": setup["setup_intent"]})
    assert stolen.status_code == 400 and "belongs to someone else" in stolen.json()["error"]
    with in_schema(maple_schema):
        other = Resident.objects.get(user=other_user)
        assert not other.saved_payment_methods.exists()
