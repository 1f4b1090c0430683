"""Payments, autopay, refunds and the ledger, in this process against localstripe (no mocks of our own code)."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection

from apps.core.tenants import in_public_schema, in_schema
from apps.payments import selectors, services
from apps.payments.events import on_payment_event, remove_listener
from apps.payments.models import LedgerEntry, Payment, Refund
from apps.payments.services import PaymentError, PaymentUnavailable, RefundRefused
from apps.payments.stripe_client import StripeClient, StripeConfig, StripeNotConfigured
from apps.webhooks.models import WebhookEvent
from tests.payments.cards import DECLINES_ON_CHARGE, VISA, paid, save_card
from tests.payments.conftest import WEBHOOK_SECRET
from tests.payments.faults import LossyProxy
from tests.payments.stripe_http import event_payload, sign

pytestmark = pytest.mark.usefixtures("stripe_settings")

@pytest.fixture
def announced():
    """The payment events announced in this process (apps/payments/events.py), as statements will get them."""
    seen = []
    on_payment_event(seen.append)
    yield seen
    remove_listener(seen.append)


def entries(resident, **filters) -> list[tuple[str, Decimal]]:
    return list(LedgerEntry.objects.filter(resident=resident, **filters).order_by("pk").values_list("kind", "amount"))


def test_one_customer_per_resident(payer, maple_schema, localstripe):
    with in_schema(maple_schema):
        first = services.customer_ensure(resident=payer)
        assert services.customer_ensure(resident=payer) == first
    status, customer = localstripe.call("GET", f"/v1/customers/{first}")
    assert status == 200 and customer["email"] == payer.user.email
    assert customer["metadata"] == {"hoa_schema": maple_schema, "hoa_resident": str(payer.pk)}


def test_autopay_with_a_saved_card_pays_once_per_reference(payer, maple_schema, localstripe, announced):
    with in_schema(maple_schema):
        card = save_card(localstripe, payer, VISA)
        assert (card.brand, card.last4, card.exp_month, card.exp_year, card.is_default) == ("visa", "4242", 12, 2034, True)
        payment = services.payment_charge_saved(resident=payer, amount=Decimal("25.10"), reference="statement:7")
        assert payment.status == Payment.Status.SUCCEEDED and payment.kind == Payment.Kind.OFF_SESSION
        # A job that runs again charges nothing more.
        again = services.payment_charge_saved(resident=payer, amount=Decimal("25.10"), reference="statement:7")
        assert again.pk == payment.pk
        assert entries(payer) == [("payment", Decimal("-25.10"))]
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("-25.10")
    assert len(localstripe.payment_intents_of(maple_schema, payment.pk)) == 1
    assert [(e.kind, e.reference, e.amount, e.payment_id) for e in announced] == [
        ("succeeded", "statement:7", Decimal("25.10"), payment.pk)]


def test_declined_saved_card_is_a_failed_payment_recorded_and_announced(payer, maple_schema, localstripe, announced):
    with in_schema(maple_schema):
        card = save_card(localstripe, payer, DECLINES_ON_CHARGE)
        assert card.last4 == "0341" and card.is_default
        payment = services.payment_charge_saved(resident=payer, amount=Decimal("40.00"), reference="statement:8")
        payment.refresh_from_db()
        assert payment.status == Payment.Status.FAILED
        assert payment.failure_code == "card_declined" and "declined" in payment.failure_message
        assert entries(payer) == []  # nothing was paid
    assert [(e.kind, e.reference, e.detail) for e in announced] == [("failed", "statement:8", "card_declined")]
    # Stripe holds the failed intent, made with our key and ids.
    [intent] = localstripe.payment_intents_of(maple_schema, payment.pk)
    assert intent["status"] == "requires_payment_method" and intent["amount"] == 4000


def test_refund_part_then_never_more_than_is_left(payer, maple_schema, localstripe, world, announced):
    with in_schema(maple_schema):
        payment = paid(localstripe, payer, maple_schema, "100.00")
        refund = services.refund_create(payment=payment, amount=Decimal("30.00"), by=world.acme_manager,
                                        reason="charger fault on 3 May")
        assert refund.status == Refund.Status.SUCCEEDED and refund.refund_id
        with pytest.raises(RefundRefused, match=r"more than the 70\.00 USD left"):
            services.refund_create(payment=payment, amount=Decimal("70.01"), by=world.acme_manager, reason="again")
        with pytest.raises(RefundRefused, match="not exact"):
            services.refund_create(payment=payment, amount=Decimal("1.001"), by=world.acme_manager, reason="odd")
        with pytest.raises(RefundRefused, match="needs a reason"):
            services.refund_create(payment=payment, amount=Decimal("1.00"), by=world.acme_manager, reason=" ")
        services.refund_create(payment=payment, amount=Decimal("70.00"), by=world.acme_manager, reason="rest")
        with pytest.raises(RefundRefused, match=r"more than the 0\.00 USD left"):
            services.refund_create(payment=payment, amount=Decimal("0.01"), by=world.acme_manager, reason="more")
        payment.refresh_from_db()
        assert payment.amount_refunded == Decimal("100.00")
        refunds = LedgerEntry.objects.filter(resident=payer, kind="refund").order_by("pk")
        assert [(e.amount, e.created_by_id, e.reason) for e in refunds] == [
            (Decimal("30.00"), world.acme_manager.pk, "charger fault on 3 May"),
            (Decimal("70.00"), world.acme_manager.pk, "rest")]
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("0.00")
    assert sorted(r["amount"] for r in localstripe.refunds_of(payment.payment_intent_id)) == [3000, 7000]
    assert [(e.kind, e.amount) for e in announced if e.kind == "refunded"] == [
        ("refunded", Decimal("30.00")), ("refunded", Decimal("70.00"))]


def test_concurrent_refunds_never_exceed_what_was_paid(payer, maple_schema, localstripe, world):
    with in_schema(maple_schema):
        payment = paid(localstripe, payer, maple_schema, "100.00")
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def refund() -> None:
        try:
            with in_schema(maple_schema):
                start.wait()
                services.refund_create(payment=payment, amount=Decimal("30.00"), by=world.acme_manager,
                                       reason="duplicate charge")
            outcomes.append("refunded")
        except RefundRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=refund) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["refunded"] * 3 + ["refused"] * 3
    with in_schema(maple_schema):
        payment.refresh_from_db()
        assert payment.amount_refunded == Decimal("90.00")
        assert entries(payer, kind="refund") == [("refund", Decimal("30.00"))] * 3
    assert sum(r["amount"] for r in localstripe.refunds_of(payment.payment_intent_id)) == 9000


def test_manager_adjustments_say_who_and_why(payer, maple_schema, world):
    with in_schema(maple_schema):
        entry = services.adjustment_create(resident=payer, amount=Decimal("-12.50"), by=world.acme_manager,
                                           reason="goodwill: charger out of order for a week")
        assert (entry.kind, entry.amount, entry.currency, entry.created_by_id) == (
            "adjustment", Decimal("-12.50"), "USD", world.acme_manager.pk)
        services.adjustment_create(resident=payer, amount=Decimal("2.00"), by=world.acme_manager, reason="late fee")
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("-10.50")
        for kwargs, why in [
            ({"amount": Decimal("1.00"), "by": None, "reason": "x"}, "needs the manager"),
            ({"amount": Decimal("1.00"), "by": world.acme_manager, "reason": ""}, "needs a reason"),
            ({"amount": Decimal("0.00"), "by": world.acme_manager, "reason": "x"}, "zero"),
            ({"amount": Decimal("0.005"), "by": world.acme_manager, "reason": "x"}, "not exact"),
            ({"amount": Decimal("1.00"), "by": world.acme_manager, "reason": "x", "currency": "EUR"},
             "not this building's currency"),
            ({"amount": Decimal("5.00"), "by": world.acme_manager, "reason": "x", "kind": "credit"}, "negative"),
        ]:
            with pytest.raises(PaymentError, match=why):
                services.adjustment_create(resident=payer, **kwargs)
        assert selectors.resident_balance(resident_id=payer.pk) == Decimal("-10.50")


def test_a_ledger_fact_is_recorded_once(payer, maple_schema):
    with in_schema(maple_schema):
        for _ in range(2):
            _, created = services.ledger_post(resident_id=payer.pk, kind="charge", amount=Decimal("31.20"),
                                              currency="USD", entry_key=f"statement:{payer.pk}-1",
                                              reference=f"statement:{payer.pk}-1")
        assert not created
        assert entries(payer) == [("charge", Decimal("31.20"))]


def test_many_ledger_facts_at_once_are_recorded_once_each_with_the_same_checks(payer, maple_schema, caplog):
    """ledger_post_many: a key posted before (one at a time or together) is kept as it was, and logged when
    the new post differs; a bad fact refuses the whole batch before anything is written."""
    key = f"statement:{payer.pk}-many"
    with in_schema(maple_schema):
        services.ledger_post(resident_id=payer.pk, kind="charge", amount=Decimal("10.00"), currency="USD",
                             entry_key=f"{key}-1")
        posts = [services.LedgerPost(resident_id=payer.pk, kind="charge", amount=Decimal(amount), currency="USD",
                                     entry_key=f"{key}-{n}", reference=f"{key}-{n}")
                 for n, amount in ((1, "12.00"), (2, "20.50"), (3, "1.25"), (3, "99.00"))]
        assert services.ledger_post_many(posts) == 2
        assert services.ledger_post_many(posts) == 0
        assert entries(payer) == [("charge", Decimal("10.00")), ("charge", Decimal("20.50")),
                                  ("charge", Decimal("1.25"))]
        assert f"{key}-1 posted again with different content" in caplog.text
        for bad, why in [({"amount": Decimal("0.001")}, "not exact"), ({"amount": Decimal(0)}, "zero"),
                         ({"kind": "gift"}, "not one of")]:
            post = services.LedgerPost(**{"resident_id": payer.pk, "kind": "charge", "amount": Decimal("5.00"),
                                          "currency": "USD", "entry_key": f"{key}-bad", **bad})
            with pytest.raises(PaymentError, match=why):
                services.ledger_post_many([services.LedgerPost(payer.pk, "charge", Decimal(7), "USD", f"{key}-4"),
                                           post])
        assert not LedgerEntry.objects.filter(entry_key__in=[f"{key}-4", f"{key}-bad"]).exists()


def test_a_retry_after_a_lost_answer_makes_no_second_payment_intent(payer, maple_schema, localstripe, settings):
    """The create reaches Stripe, its answer is lost: the SDK retries with the same idempotency key and Stripe
    (here localstripe with Stripe's key handling, hoa_charging/localstripe_server.py) answers with the same
    PaymentIntent. Then with no retries at all: our stored key makes the next call get the same intent."""
    proxy = LossyProxy(int(localstripe.url.rsplit(":", 1)[1]))
    settings.STRIPE_API_BASE = proxy.url
    try:
        with in_schema(maple_schema):
            services.customer_ensure(resident=payer)
            proxy.lose_next("POST /v1/payment_intents ")
            start = services.payment_start(resident=payer, amount=Decimal("18.00"), reference="statement:retry-1")
            assert proxy.lost == ["POST /v1/payment_intents HTTP/1.1"]
            assert proxy.forwarded.count("POST /v1/payment_intents HTTP/1.1") == 2  # performed, then asked again
            assert [pi["id"] for pi in localstripe.payment_intents_of(maple_schema, start.payment_id)] == [
                start.payment_intent_id]

            settings.STRIPE_MAX_NETWORK_RETRIES = 0
            proxy.lose_next("POST /v1/payment_intents ")
            with pytest.raises(PaymentUnavailable, match="try again"):
                services.payment_start(resident=payer, amount=Decimal("19.00"), reference="statement:retry-2")
            payment = Payment.objects.get(resident=payer, reference="statement:retry-2")
            assert payment.status == Payment.Status.CREATING and not payment.payment_intent_id
            made = localstripe.payment_intents_of(maple_schema, payment.pk)
            assert len(made) == 1  # Stripe made it; we never heard
            again = services.payment_start(resident=payer, amount=Decimal("19.00"), reference="statement:retry-2")
            assert (again.payment_id, again.payment_intent_id) == (payment.pk, made[0]["id"])
            assert len(localstripe.payment_intents_of(maple_schema, payment.pk)) == 1
            payment.refresh_from_db()
            assert payment.status == Payment.Status.REQUIRES_PAYMENT_METHOD
    finally:
        proxy.close()
    # The control: without the same key, the same request makes a second intent.
    body = {"amount": 100, "currency": "usd"}
    first = localstripe.call("POST", "/v1/payment_intents", body, {"Idempotency-Key": "control-a"})[1]["id"]
    assert localstripe.call("POST", "/v1/payment_intents", body, {"Idempotency-Key": "control-a"})[1]["id"] == first
    assert localstripe.call("POST", "/v1/payment_intents", body, {"Idempotency-Key": "control-b"})[1]["id"] != first


def test_amounts_that_stripe_cannot_take_exactly_are_refused_before_any_call(payer, maple_schema, localstripe):
    with in_schema(maple_schema):
        for amount, why in [(Decimal("10.005"), "not exact"), (Decimal("0"), "more than zero"),
                            (Decimal("-5.00"), "more than zero")]:
            with pytest.raises(PaymentError, match=why):
                services.payment_start(resident=payer, amount=amount, reference="statement:bad")
        with pytest.raises(PaymentError, match="not this building's currency"):
            services.payment_start(resident=payer, amount=Decimal("10"), currency="JPY", reference="statement:bad")
        assert not Payment.objects.filter(resident=payer).exists()


def test_jpy_amounts_are_whole_yen_at_the_boundary(sakura, localstripe, committed):
    schema, resident = sakura
    with in_schema(schema):
        start = services.payment_start(resident=resident, amount=Decimal("370"), reference="statement:jp-1")
        with pytest.raises(PaymentError, match=r"not exact in the currency \(0 decimals\)"):
            services.payment_start(resident=resident, amount=Decimal("370.5"), reference="statement:jp-2")
    intent = localstripe.payment_intent(start.payment_intent_id)
    assert (intent["amount"], intent["currency"]) == (370, "jpy")
    status, body = localstripe.confirm_payment(start.payment_intent_id)
    assert status == 200 and body["status"] == "succeeded"
    with in_schema(schema):
        services.payment_apply_intent(payment_id=start.payment_id,
                                      intent=services.get_client().payment_intent_retrieve(start.payment_intent_id))
        assert entries(resident) == [("payment", Decimal("-370"))]
        payment = Payment.objects.get(pk=start.payment_id)
        refund = services.refund_create(payment=payment, amount=Decimal("120"), by=resident.user, reason="overcharge")
        assert refund.status == Refund.Status.SUCCEEDED
    assert [r["amount"] for r in localstripe.refunds_of(start.payment_intent_id)] == [120]


def test_without_keys_the_client_refuses_and_says_what_is_missing(settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(StripeNotConfigured, match="STRIPE_SECRET_KEY not set"):
        services.get_client()
    with pytest.raises(StripeNotConfigured, match="must start with sk_"):
        StripeClient(StripeConfig("pk_test_x", "pk_test_x", "whsec_x", "http://127.0.0.1:1", 0, 300))


def test_a_chargeback_is_owed_again_and_given_back_when_won(payer, maple_schema, localstripe, announced):
    with in_schema(maple_schema):
        payment = paid(localstripe, payer, maple_schema, "80.00")
    charge = localstripe.payment_intent(payment.payment_intent_id)["latest_charge"]
    dispute = localstripe.open_dispute(charge["id"] if isinstance(charge, dict) else charge)
    with in_schema(maple_schema):
        for _ in range(2):  # the event twice, or two events about it: once
            services.dispute_apply(payment_id=payment.pk,
                                   result=services.get_client().dispute_retrieve(dispute["id"]))
        assert entries(payer) == [("payment", Decimal("-80.00")), ("dispute", Decimal("80.00"))]
    localstripe.close_dispute(dispute["id"], "won")
    with in_schema(maple_schema):
        for _ in range(2):
            services.dispute_apply(payment_id=payment.pk,
                                   result=services.get_client().dispute_retrieve(dispute["id"]))
        assert entries(payer)[2:] == [("dispute_reversal", Decimal("-80.00"))]
        payment.refresh_from_db()
        assert payment.amount_disputed == Decimal("0.00")
    assert [(e.kind, e.amount, e.detail) for e in announced] == [
        ("succeeded", Decimal("80.00"), ""), ("disputed", Decimal("80.00"), "needs_response"),
        ("dispute_closed", Decimal("80.00"), "won")]


def test_two_workers_process_one_event_once(payer, maple_schema, localstripe, announced):
    """Two workers take the same event at the same moment (a redelivered task, the sweep): one applies it."""
    with in_schema(maple_schema):
        began = services.payment_start(resident=payer, amount=Decimal("14.00"), reference="statement:twice")
    localstripe.confirm_payment(began.payment_intent_id)
    body = event_payload("payment_intent.succeeded", {"id": began.payment_intent_id, "object": "payment_intent"})
    receipt = services.webhook_receive(payload=body, signature=sign(body, WEBHOOK_SECRET))
    assert receipt.stored and not services.webhook_receive(payload=body, signature=sign(body, WEBHOOK_SECRET)).stored
    with in_public_schema():
        event = WebhookEvent.objects.get(event_id=receipt.event_id)
    start = threading.Barrier(2)
    results: list[str] = []

    def work() -> None:
        try:
            start.wait()
            results.append(services.webhook_process(event_pk=event.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [f"payment {began.payment_id} succeeded"] * 2
    with in_schema(maple_schema):
        assert entries(payer) == [("payment", Decimal("-14.00"))]
    assert [(e.kind, e.payment_id) for e in announced] == [("succeeded", began.payment_id)]
    with in_public_schema():
        event.refresh_from_db()
    assert event.processed_at is not None and event.schema_name == maple_schema
    assert event.pk not in services.webhooks_pending(older_than_seconds=0)


def test_the_sweep_takes_unprocessed_events_and_gives_up_after_many_attempts(committed, localstripe):
    from apps.payments.services import WEBHOOK_MAX_ATTEMPTS

    body = event_payload("payment_intent.succeeded", {"id": "pi_missing", "object": "payment_intent"})
    receipt = services.webhook_receive(payload=body, signature=sign(body, WEBHOOK_SECRET))
    with in_public_schema():
        event = WebhookEvent.objects.get(event_id=receipt.event_id)
    assert event.pk in services.webhooks_pending(older_than_seconds=0)
    assert event.pk not in services.webhooks_pending(older_than_seconds=60)  # its own task is still on its way
    # Stripe has no such intent: recorded as done, with the reason, and not retried.
    assert services.webhook_process(event_pk=event.pk).startswith("Stripe refused the re-fetch")
    assert event.pk not in services.webhooks_pending(older_than_seconds=0)
    with in_public_schema():
        stuck = WebhookEvent.objects.create(source="stripe", event_id=f"evt_stuck_{event.pk}", type="x", payload={},
                                            attempts=WEBHOOK_MAX_ATTEMPTS)
    assert stuck.pk not in services.webhooks_pending(older_than_seconds=0)


def test_a_payment_stripe_refuses_is_closed_and_the_next_try_is_a_new_one(payer, maple_schema, localstripe):
    with in_schema(maple_schema):
        customer = services.customer_ensure(resident=payer)
    assert localstripe.call("DELETE", f"/v1/customers/{customer}")[0] == 200  # gone at Stripe (the dashboard)
    with in_schema(maple_schema):
        for _ in range(2):
            with pytest.raises(PaymentError, match="Stripe refused the payment"):
                services.payment_start(resident=payer, amount=Decimal("8.00"), reference="statement:refused")
        rows = list(Payment.objects.filter(resident=payer).values_list("status", "idempotency_key"))
    assert [status for status, _ in rows] == ["canceled", "canceled"]
    assert rows[0][1] != rows[1][1]
