"""The webhook endpoint answers at once and leaves the work to a task: with no worker running, a real Stripe
event is verified, stored and answered; the payment changes only when a worker takes the queued task."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from apps.core.tenants import in_public_schema, in_schema
from apps.payments import services
from apps.payments.models import LedgerEntry, Payment
from apps.webhooks.models import WebhookEvent
from tests.helpers import wait_for
from tests.payments.conftest import WEBHOOK_SECRET, start_worker, stripe_env
from tests.payments.stripe_http import post_webhook, sign
from tests.servers import Daphne, database_url_for_subprocesses

pytestmark = pytest.mark.usefixtures("stripe_settings")


def test_stored_and_answered_at_once_then_done_by_the_worker(localstripe, payer, maple_schema, tmp_path):
    database_url = database_url_for_subprocesses()
    daphne = Daphne(database_url, tmp_path / "daphne.log", env=stripe_env(localstripe))
    daphne.start()
    worker = None
    try:
        url = f"http://127.0.0.1:{daphne.port}/payments/stripe/webhook"
        with in_schema(maple_schema):
            began = services.payment_start(resident=payer, amount=Decimal("12.00"), reference="statement:fast-1")
        localstripe.confirm_payment(began.payment_intent_id)
        intent = localstripe.payment_intent(began.payment_intent_id)
        # The event as Stripe sends it (signed now, with the secret): no worker runs yet.
        body = (b'{"id": "evt_fast_%s", "object": "event", "type": "payment_intent.succeeded", "created": %d, '
                b'"livemode": false, "data": {"object": {"id": "%s", "object": "payment_intent"}}}'
                % (began.payment_intent_id.encode(), int(time.time()), intent["id"].encode()))
        times = []
        for _ in range(5):  # the first stores it, the others are redeliveries
            t0 = time.perf_counter()
            status, _ = post_webhook(url, body, sign(body, WEBHOOK_SECRET))
            times.append(time.perf_counter() - t0)
            assert status == 200
        assert max(times) < 1.0, times
        with in_public_schema():
            event = WebhookEvent.objects.get(event_id=f"evt_fast_{began.payment_intent_id}")
        assert event.processed_at is None and event.attempts == 0
        with in_schema(maple_schema):
            assert Payment.objects.get(pk=began.payment_id).status == Payment.Status.REQUIRES_PAYMENT_METHOD

        worker = start_worker(localstripe, database_url, tmp_path / "worker.log")

        def done():
            with in_public_schema():
                return WebhookEvent.objects.filter(pk=event.pk, processed_at__isnull=False).exists()

        wait_for(done, 60, interval=0.2, what="the queued event processed by the worker")
        with in_schema(maple_schema):
            assert Payment.objects.get(pk=began.payment_id).status == Payment.Status.SUCCEEDED
            assert list(LedgerEntry.objects.filter(payment_id=began.payment_id).values_list("amount", flat=True)) == [
                Decimal("-12.00")]
        with in_public_schema():
            assert WebhookEvent.objects.get(pk=event.pk).attempts == 1
    finally:
        daphne.close()
        if worker is not None:
            worker.stop()
