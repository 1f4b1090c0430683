"""Payments' web interfaces.

On the company site's host (one Stripe account for the whole platform):
    POST /payments/stripe/webhook                  Stripe's events (signature checked, stored, queued)
On a building's own host (JSON for pages that use Stripe.js):
    GET  /payments/account                         the resident's balance, ledger, payments, cards
    POST /payments/pay-balance                     start paying what the resident owes (client secret)
    POST /payments/cards/setup, /payments/cards/save   save a card for autopay
    POST /payments/<id>/refunds                    managers: {"amount": "10.00", "reason": "..."}
    POST /payments/residents/<id>/adjustments      managers: {"amount": "-5.00", "reason": "...", "kind": ...}
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal, InvalidOperation
from functools import wraps

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import MANAGER, RESIDENT
from apps.buildings.models import Resident
from apps.payments import money, selectors, services
from apps.payments.models import LedgerEntry, Payment
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


# --- a building's own host: the resident's account and card, the managers' refunds and adjustments ---------
# JSON for the pages that use Stripe.js (the client secret goes to the browser, the card never reaches us).


def _body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        raise _BadRequest("the body must be JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("the body must be a JSON object")
    return data


def _amount(data: dict) -> Decimal:
    raw = data.get("amount")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise _BadRequest("amount is required, as a string such as \"12.50\"")
    try:
        return Decimal(str(raw).strip())
    except InvalidOperation:
        raise _BadRequest(f"amount {raw!r} is not a number") from None


class _BadRequest(Exception):
    pass


def _answers(view):
    """PaymentError and bad input become 400 with the reason; Stripe unreachable becomes 503."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except services.PaymentUnavailable as exc:
            return JsonResponse({"error": str(exc)}, status=503)
        except (services.PaymentError, _BadRequest) as exc:
            return JsonResponse({"error": str(exc)}, status=400)

    return wrapper


def _own_resident(request: HttpRequest) -> Resident:
    resident = (Resident.objects.select_related("user").filter(user=request.user, is_active=True)
                .order_by("pk").first())
    if resident is None:
        raise Http404("not a resident here")
    return resident


def _entry(entry: LedgerEntry) -> dict:
    amount = entry.amount.quantize(money.quantum(entry.currency))
    return {"at": entry.created_at.isoformat(), "kind": entry.kind, "amount": str(amount),
            "currency": entry.currency, "reference": entry.reference, "reason": entry.reason}


@condominium_role_required(RESIDENT)
@require_GET
def account(request: HttpRequest) -> JsonResponse:
    """The resident's own balance, ledger, payments and saved cards."""
    resident = _own_resident(request)
    quantum = money.quantum(request.tenant.currency)
    return JsonResponse({
        "currency": request.tenant.currency,
        "balance": str(selectors.resident_balance(resident_id=resident.pk).quantize(quantum)),
        "entries": [_entry(e) for e in selectors.resident_ledger(resident_id=resident.pk)],
        "payments": [{"id": p.pk, "amount": str(p.amount.quantize(quantum)), "currency": p.currency,
                      "reference": p.reference, "status": p.status,
                      "refunded": str(p.amount_refunded.quantize(quantum))}
                     for p in selectors.resident_payments(resident_id=resident.pk)],
        "cards": [{"brand": c.brand, "last4": c.last4, "exp_month": c.exp_month, "exp_year": c.exp_year,
                   "default": c.is_default} for c in resident.saved_payment_methods.filter(removed_at__isnull=True)],
    })


@condominium_role_required(RESIDENT)
@require_POST
@_answers
def pay_balance(request: HttpRequest) -> JsonResponse:
    """Start paying what the resident owes: Stripe.js confirms the returned client secret with the card."""
    resident = _own_resident(request)
    balance = selectors.resident_balance(resident_id=resident.pk)
    if balance <= 0:
        raise _BadRequest("nothing to pay: the balance is not positive")
    started = services.payment_start(resident=resident, amount=balance, reference="balance", purpose="balance",
                                     by=request.user)
    return JsonResponse({"payment": started.payment_id, "client_secret": started.client_secret,
                         "publishable_key": started.publishable_key})


@condominium_role_required(RESIDENT)
@require_POST
@_answers
def card_setup(request: HttpRequest) -> JsonResponse:
    started = services.payment_method_setup(resident=_own_resident(request))
    return JsonResponse({"setup_intent": started.setup_intent_id, "client_secret": started.client_secret,
                         "publishable_key": started.publishable_key})


@condominium_role_required(RESIDENT)
@require_POST
@_answers
def card_save(request: HttpRequest) -> JsonResponse:
    setup_intent_id = str(_body(request).get("setup_intent") or "")
    if not setup_intent_id.startswith("seti_"):
        raise _BadRequest("setup_intent is required (the id Stripe.js confirmed)")
    saved = services.payment_method_save(resident=_own_resident(request), setup_intent_id=setup_intent_id)
    return JsonResponse({"brand": saved.brand, "last4": saved.last4, "default": saved.is_default})


@condominium_role_required(MANAGER)
@require_POST
@_answers
def refund(request: HttpRequest, payment_id: int) -> JsonResponse:
    payment = get_object_or_404(Payment, pk=payment_id)
    data = _body(request)
    made = services.refund_create(payment=payment, amount=_amount(data), by=request.user,
                                  reason=str(data.get("reason") or ""))
    return JsonResponse({"refund": made.pk, "status": made.status,
                         "amount": str(made.amount.quantize(money.quantum(made.currency)))}, status=201)


@condominium_role_required(MANAGER)
@require_POST
@_answers
def adjustment(request: HttpRequest, resident_id: int) -> JsonResponse:
    resident = get_object_or_404(Resident, pk=resident_id)
    data = _body(request)
    entry = services.adjustment_create(resident=resident, amount=_amount(data), by=request.user,
                                       reason=str(data.get("reason") or ""),
                                       kind=str(data.get("kind") or LedgerEntry.Kind.ADJUSTMENT))
    return JsonResponse(_entry(entry), status=201)
