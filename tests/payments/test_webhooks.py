"""Stripe's webhooks end to end: localstripe signs and sends them to a real daphne serving the platform, the
endpoint verifies and stores each event once, and a real Celery worker re-fetches the object from Stripe and
records what it says, once."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import pytest

from apps.core.tenants import in_public_schema, in_schema
from apps.payments import selectors, services
from apps.payments.models import Dispute, LedgerEntry, Payment
from apps.webhooks.models import WebhookEvent
from tests.helpers import wait_for
from tests.payments.conftest import WEBHOOK_SECRET
from tests.payments.stripe_http import event_payload, post_webhook, sign

pytestmark = pytest.mark.usefixtures("stripe_settings")


def payment_row(schema: str, payment_id: int) -> Payment:
    with in_schema(schema):
        return Payment.objects.get(pk=payment_id)


def ledger(schema: str, resident_id: int) -> list[tuple[str, Decimal]]:
    with in_schema(schema):
        return list(LedgerEntry.objects.filter(resident_id=resident_id).order_by("pk").values_list("kind", "amount"))


def events_about(object_id: str, event_type: str | None = None) -> list[WebhookEvent]:
    with in_public_schema():
        rows = WebhookEvent.objects.filter(payload__data__object__id=object_id).order_by("pk")
        if event_type:
            rows = rows.filter(type=event_type)
        return list(rows)


def processed(platform, object_id: str, event_type: str) -> WebhookEvent:
    """Wait until the worker has processed the event of this type about this object."""

    def done():
        rows = [row for row in events_about(object_id, event_type) if row.processed_at]
        return rows[0] if rows else None

    try:
        return wait_for(done, 45, interval=0.2, what=f"{event_type} about {object_id} processed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{platform.logs()}") from None


def start(schema: str, resident, amount: str, reference: str | None = None) -> services.PaymentStart:
    with in_schema(schema):
        return services.payment_start(resident=resident, amount=Decimal(amount),
                                      reference=reference or f"statement:{uuid.uuid4().hex[:8]}")


def test_pay_with_a_card_end_to_end(platform, localstripe, payer, maple_schema):
    began = start(maple_schema, payer, "42.50", "statement:e2e-1")
    assert began.client_secret.startswith(began.payment_intent_id + "_secret_")
    intent = localstripe.payment_intent(began.payment_intent_id)
    assert (intent["amount"], intent["currency"], intent["customer"]) == (4250, "usd", payer.stripe_customer.customer_id)
    assert intent["metadata"] == {"hoa_schema": maple_schema, "hoa_payment": str(began.payment_id),
                                  "hoa_resident": str(payer.pk), "hoa_reference": "statement:e2e-1"}
    assert payment_row(maple_schema, began.payment_id).status == Payment.Status.REQUIRES_PAYMENT_METHOD

    status, confirmed = localstripe.confirm_payment(began.payment_intent_id, "pm_card_visa")  # Stripe.js
    assert status == 200 and confirmed["status"] == "succeeded"

    event = processed(platform, began.payment_intent_id, "payment_intent.succeeded")
    assert event.schema_name == maple_schema and event.result.startswith(f"payment {began.payment_id} succeeded")
    payment = payment_row(maple_schema, began.payment_id)
    assert payment.status == Payment.Status.SUCCEEDED and payment.succeeded_at is not None
    assert ledger(maple_schema, payer.pk) == [("payment", Decimal("-42.50"))]
    with in_schema(maple_schema):
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("-42.50")
        assert list(selectors.payments_for(reference="statement:e2e-1")) == [payment]

    # The same event again (Stripe redelivers; an attacker replays a captured one within the tolerance): stored
    # once, answered 200 so Stripe stops, and nothing changes.
    body = json.dumps(event.payload).encode()
    status, answer = post_webhook(platform.webhook_url, body, sign(body, WEBHOOK_SECRET))
    assert status == 200 and json.loads(answer) == {"received": event.event_id, "duplicate": True}
    # Older than the tolerance (5 minutes): refused outright.
    status, _ = post_webhook(platform.webhook_url, body, sign(body, WEBHOOK_SECRET, int(time.time()) - 3600))
    assert status == 400
    time.sleep(1.5)  # what a second processing would have needed
    assert len(events_about(began.payment_intent_id, "payment_intent.succeeded")) == 1
    assert ledger(maple_schema, payer.pk) == [("payment", Decimal("-42.50"))]


@pytest.mark.parametrize("signature", [
    "forged",  # signed with another secret
    None,  # no header
    "t=notanumber,v1=abc",
    "v1=deadbeef",
    "",
])
def test_a_forged_webhook_gets_400_and_changes_nothing(platform, localstripe, payer, maple_schema, signature):
    began = start(maple_schema, payer, "15.00")
    snapshot = {**localstripe.payment_intent(began.payment_intent_id), "status": "succeeded"}
    body = event_payload("payment_intent.succeeded", snapshot)
    header = sign(body, "whsec_" + "0" * 32) if signature == "forged" else signature
    status, answer = post_webhook(platform.webhook_url, body, header)
    assert status == 400 and b"signature" in answer
    assert events_about(began.payment_intent_id) == []
    assert payment_row(maple_schema, began.payment_id).status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert ledger(maple_schema, payer.pk) == []
    # A body changed after signing fails too.
    good = sign(body, WEBHOOK_SECRET)
    status, _ = post_webhook(platform.webhook_url, body.replace(b"1500", b"1"), good)
    assert status == 400 and events_about(began.payment_intent_id) == []


def test_an_event_that_arrives_before_the_change_it_announces_changes_nothing_until_it_happened(
    platform, localstripe, payer, maple_schema
):
    began = start(maple_schema, payer, "20.00")
    # A genuine, signed event whose snapshot says succeeded, delivered while the intent still waits for a card.
    snapshot = {**localstripe.payment_intent(began.payment_intent_id), "status": "succeeded"}
    body = event_payload("payment_intent.succeeded", snapshot)
    status, _ = post_webhook(platform.webhook_url, body, sign(body, WEBHOOK_SECRET))
    assert status == 200
    early = processed(platform, began.payment_intent_id, "payment_intent.succeeded")
    assert early.result == f"payment {began.payment_id} requires_payment_method"  # Stripe, asked again, decided
    assert payment_row(maple_schema, began.payment_id).status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert ledger(maple_schema, payer.pk) == []

    status, _ = localstripe.confirm_payment(began.payment_intent_id)
    assert status == 200

    def paid():
        return payment_row(maple_schema, began.payment_id).status == Payment.Status.SUCCEEDED

    wait_for(paid, 45, interval=0.2, what="the payment succeeded after the real event")
    assert ledger(maple_schema, payer.pk) == [("payment", Decimal("-20.00"))]


def test_refund_and_dispute_through_webhooks_are_recorded_once(platform, localstripe, payer, maple_schema, world):
    began = start(maple_schema, payer, "60.00")
    localstripe.confirm_payment(began.payment_intent_id)
    processed(platform, began.payment_intent_id, "payment_intent.succeeded")
    with in_schema(maple_schema):
        payment = Payment.objects.get(pk=began.payment_id)
        services.refund_create(payment=payment, amount=Decimal("10.00"), by=world.acme_manager, reason="idle fee waived")
    charge_id = localstripe.payment_intent(began.payment_intent_id)["latest_charge"]
    charge_id = charge_id["id"] if isinstance(charge_id, dict) else charge_id
    refunded = processed(platform, charge_id, "charge.refunded")  # the API's answer and the webhook: once
    assert "1 refund(s)" in refunded.result
    assert ledger(maple_schema, payer.pk) == [("payment", Decimal("-60.00")), ("refund", Decimal("10.00"))]

    dispute = localstripe.open_dispute(charge_id)  # the resident's bank: a chargeback of the whole charge
    opened = processed(platform, dispute["id"], "charge.dispute.created")
    assert opened.result.endswith("dispute needs_response")
    with in_schema(maple_schema):
        row = Dispute.objects.get(dispute_id=dispute["id"])
        assert (row.payment_id, row.amount, row.status) == (began.payment_id, Decimal("60.00"), "needs_response")
        assert Payment.objects.get(pk=began.payment_id).amount_disputed == Decimal("60.00")
    localstripe.close_dispute(dispute["id"], "won")
    processed(platform, dispute["id"], "charge.dispute.closed")
    assert ledger(maple_schema, payer.pk) == [
        ("payment", Decimal("-60.00")), ("refund", Decimal("10.00")), ("dispute", Decimal("60.00")),
        ("dispute_reversal", Decimal("-60.00"))]
    with in_schema(maple_schema):
        assert Payment.objects.get(pk=began.payment_id).amount_disputed == Decimal("0.00")
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("-50.00")


def test_a_declined_autopay_is_linked_to_its_intent_by_the_webhook(platform, localstripe, payer, maple_schema):
    with in_schema(maple_schema):
        setup = services.payment_method_setup(resident=payer)
        localstripe.confirm_setup(setup.setup_intent_id, "4000000000000341")
        services.payment_method_save(resident=payer, setup_intent_id=setup.setup_intent_id)
        payment = services.payment_charge_saved(resident=payer, amount=Decimal("33.00"), reference="statement:ap-1")
    assert payment.status == Payment.Status.FAILED
    [intent] = localstripe.payment_intents_of(maple_schema, payment.pk)
    event = processed(platform, intent["id"], "payment_intent.payment_failed")
    assert event.result == f"payment {payment.pk} failed"
    row = payment_row(maple_schema, payment.pk)
    assert (row.status, row.payment_intent_id, row.failure_code) == ("failed", intent["id"], "card_declined")
    assert ledger(maple_schema, payer.pk) == []


def test_another_building_gets_nothing_from_an_intent_that_names_it(platform, localstripe, payer, world, maple_schema):
    """Someone with access to the Stripe account edits a Maple Court intent's metadata to name an Oak Tower payment:
    the event is routed to Oak Tower, whose payment is not that intent, so nothing changes in either building."""
    from apps.buildings.models import Resident
    from tests import factories

    oak_schema = world.oak.schema_name
    oak_user = factories.resident(world.oak, f"oak-{uuid.uuid4().hex[:8]}@oak.test", "7A")
    with in_schema(oak_schema):
        oak_resident = Resident.objects.select_related("user").get(user=oak_user)
    oak_payment = start(oak_schema, oak_resident, "60.00")
    maple_payment = start(maple_schema, payer, "60.00")
    status, _ = localstripe.call("POST", f"/v1/payment_intents/{maple_payment.payment_intent_id}", {
        "metadata": {"hoa_schema": oak_schema, "hoa_payment": str(oak_payment.payment_id)}})
    assert status == 200
    localstripe.confirm_payment(maple_payment.payment_intent_id)
    event = processed(platform, maple_payment.payment_intent_id, "payment_intent.succeeded")
    assert event.result.startswith("needs review")
    oak_row = payment_row(oak_schema, oak_payment.payment_id)
    assert oak_row.status == Payment.Status.REQUIRES_PAYMENT_METHOD
    assert maple_payment.payment_intent_id in oak_row.needs_review
    assert ledger(oak_schema, oak_resident.pk) == [] and ledger(maple_schema, payer.pk) == []
    assert payment_row(maple_schema, maple_payment.payment_id).status == Payment.Status.REQUIRES_PAYMENT_METHOD


def test_the_webhook_address_exists_on_the_company_site_only(client, world, db):
    for host in ("maple-court.localhost", "harbor-view.localhost"):
        assert client.post("/payments/stripe/webhook", b"{}", content_type="application/json",
                           HTTP_HOST=host).status_code == 404
    assert client.get("/payments/stripe/webhook", HTTP_HOST="localhost").status_code == 405


def test_a_card_saved_in_the_browser_is_kept_when_stripe_says_so(platform, localstripe, payer, maple_schema):
    """setup_intent.succeeded (localstripe sends none: signed here as Stripe would) keeps the card for autopay
    from the SetupIntent re-fetched from Stripe, even if the browser never came back to say so."""
    from apps.payments.models import SavedPaymentMethod

    with in_schema(maple_schema):
        setup = services.payment_method_setup(resident=payer)
    status, confirmed = localstripe.confirm_setup(setup.setup_intent_id, "4242424242424242")
    assert status == 200 and confirmed["status"] == "succeeded"
    body = event_payload("setup_intent.succeeded", confirmed)
    assert post_webhook(platform.webhook_url, body, sign(body, WEBHOOK_SECRET))[0] == 200
    event = processed(platform, setup.setup_intent_id, "setup_intent.succeeded")
    assert event.result == f"card {confirmed['payment_method']} saved" and event.schema_name == maple_schema
    with in_schema(maple_schema):
        card = SavedPaymentMethod.objects.get(resident=payer)
        assert (card.payment_method_id, card.last4, card.is_default) == (confirmed["payment_method"], "4242", True)


def test_a_dispute_update_and_a_failed_refund_arrive_as_webhooks_and_count_once(
    platform, localstripe, payer, maple_schema, world
):
    """charge.dispute.updated (an inquiry becoming a chargeback) and charge.refund.updated (a refund failing
    days later) are re-fetched and applied once: the ledger shows the chargeback once, the refund reversed once."""
    began = start(maple_schema, payer, "30.00")
    localstripe.confirm_payment(began.payment_intent_id)
    processed(platform, began.payment_intent_id, "payment_intent.succeeded")
    with in_schema(maple_schema):
        payment = Payment.objects.get(pk=began.payment_id)
        refund = services.refund_create(payment=payment, amount=Decimal("5.00"), by=world.acme_manager,
                                        reason="session ended by a fault")
    charge_id = localstripe.payment_intent(began.payment_intent_id)["latest_charge"]
    charge_id = charge_id["id"] if isinstance(charge_id, dict) else charge_id
    processed(platform, charge_id, "charge.refunded")

    localstripe.fail_refund(refund.refund_id)
    failed = processed(platform, refund.refund_id, "charge.refund.updated")
    assert "1 refund(s)" in failed.result
    with in_schema(maple_schema):
        assert Payment.objects.get(pk=began.payment_id).amount_refunded == Decimal("0.00")
    assert ledger(maple_schema, payer.pk) == [
        ("payment", Decimal("-30.00")), ("refund", Decimal("5.00")), ("refund", Decimal("-5.00"))]

    dispute = localstripe.open_dispute(charge_id)
    processed(platform, dispute["id"], "charge.dispute.created")
    localstripe.update_dispute(dispute["id"], "under_review")  # the evidence is in: still withdrawn, once
    updated = processed(platform, dispute["id"], "charge.dispute.updated")
    assert updated.result.endswith("dispute under_review")
    with in_schema(maple_schema):
        row = Dispute.objects.get(dispute_id=dispute["id"])
        assert row.status == "under_review"
        assert Payment.objects.get(pk=began.payment_id).amount_disputed == Decimal("30.00")
    assert ledger(maple_schema, payer.pk) == [
        ("payment", Decimal("-30.00")), ("refund", Decimal("5.00")), ("refund", Decimal("-5.00")),
        ("dispute", Decimal("30.00"))]
