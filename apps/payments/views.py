"""Stripe's webhook endpoint (on the company site's host: one Stripe account for the whole platform)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.payments import services
from apps.payments.stripe_client import WebhookSignatureInvalid

logger = logging.getLogger(__name__)


@csrf_exempt  # Stripe signs the body instead; there is no session and no form
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify and store the event, answer at once; a Celery task does the work (apps/payments/tasks.py)."""
    try:
        receipt = services.webhook_receive(payload=request.body, signature=request.headers.get("Stripe-Signature"))
    except WebhookSignatureInvalid as exc:
        logger.warning("stripe webhook refused: %s", exc)
        return JsonResponse({"error": "signature verification failed"}, status=400)
    return JsonResponse({"received": receipt.event_id, "duplicate": not receipt.stored})
