"""Celery tasks of payments: a webhook event's processing, and the sweep that catches events whose
task was never queued (a broker that was down when they came)."""

from __future__ import annotations

from celery import shared_task

from apps.payments import services
from apps.payments.stripe_client import StripeUnavailable


@shared_task(bind=True, max_retries=12)
def process_stripe_event(self, event_pk: int) -> str:
    """One stored Stripe event (public schema id; the building is found from the object Stripe returns)."""
    try:
        return services.webhook_process(event_pk=event_pk)
    except StripeUnavailable as exc:
        raise self.retry(exc=exc, countdown=min(600, 5 * 2 ** self.request.retries)) from exc


@shared_task
def process_pending_stripe_events() -> int:
    pending = services.webhooks_pending()
    for event_pk in pending:
        process_stripe_event.delay(event_pk)
    return len(pending)
