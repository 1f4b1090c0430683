"""Payments, refunds, disputes and the residents' ledger. Call inside the condominium's schema
(except ``webhook_receive`` and ``webhook_process``, which find the building themselves).

How a payment goes:
    payment_start(...)         on-session: a PaymentIntent whose client secret the browser confirms with Stripe.js
    payment_method_setup(...)  a SetupIntent to save a card; payment_method_save(...) keeps it for autopay
    payment_charge_saved(...)  autopay: an off-session PaymentIntent on the saved card, confirmed at once
    webhook_receive(...)       Stripe tells us something happened: verified, stored once, queued
    webhook_process(...)       the worker: re-fetches the object from Stripe and records what it says, once

Rules kept here:
- Stripe is asked with an idempotency key stored on our row before the call, so a retry after a timeout
  (the outcome unknown) asks again with the same key and Stripe performs the call once.
- The state of a payment always comes from the PaymentIntent as Stripe returns it (its answer, or a fresh
  retrieve); a webhook's snapshot is never trusted, so events in any order, twice, or before the change
  they announce, leave the right state.
- Each fact is one ledger entry, whatever the number of ways it reaches us (``entry_key`` is unique).
- A refund never exceeds what was paid: refunds are reserved (pending) under a lock on the payment before
  Stripe is asked, and a check constraint guards ``amount_refunded``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from apps.buildings.models import Resident
from apps.core.tenants import in_public_schema, in_schema
from apps.payments import money
from apps.payments.events import PaymentEvent, PaymentEventKind, payment_event
from apps.payments.models import (
    Dispute,
    LedgerEntry,
    Payment,
    Refund,
    SavedPaymentMethod,
    StripeCustomer,
)
from apps.payments.stripe_client import (
    DisputeResult,
    IntentResult,
    RefundResult,
    StripeDeclined,
    StripeError,
    StripeRefused,
    StripeUnavailable,
    VerifiedEvent,
    get_client,
)
from apps.tenancy.models import Condominium
from apps.webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)


class PaymentError(Exception):
    """Something a person asked for cannot be done; the message says what and why."""


class PaymentUnavailable(PaymentError):
    """Stripe could not be reached: nothing is lost, the same call can be made again."""


class RefundRefused(PaymentError):
    pass


# --- helpers ------------------------------------------------------------------------------------


def _schema() -> str:
    schema = connection.schema_name
    if not schema or schema == "public":
        raise RuntimeError("payments are a building's: call this inside the condominium's schema")
    return schema


def building_currency() -> str:
    """The currency of the building whose schema is current (its registry row, in the public schema)."""
    schema = _schema()
    with in_public_schema():
        return Condominium.objects.values_list("currency", flat=True).get(schema_name=schema).upper()


def _currency(currency: str | None) -> str:
    building = building_currency()
    if currency is None:
        return building
    try:
        code = money.currency_code(currency)
    except money.MoneyError as exc:
        raise PaymentError(str(exc)) from None
    if code != building:
        raise PaymentError(f"currency {code} is not this building's currency ({building})")
    return code


def _exact(amount: Decimal, currency: str, *, positive: bool = True) -> tuple[Decimal, int]:
    """The amount normalised to the currency's decimals, and in minor units; refuses what is not exact."""
    try:
        minor = money.to_payable_minor_units(amount, currency) if positive else money.to_minor_units(amount, currency)
    except money.MoneyError as exc:
        raise PaymentError(str(exc)) from None
    return money.from_minor_units(minor, currency), minor


def _q(amount: Decimal, currency: str) -> Decimal:
    """An amount from the database (three decimals for every currency) with the currency's own decimals."""
    return amount.quantize(money.quantum(currency))


def _metadata(**ids: object) -> dict[str, str]:
    return {"hoa_schema": _schema(), **{f"hoa_{key}": str(value) for key, value in ids.items()}}


def _key(kind: str) -> str:
    return f"{_schema()}:{kind}:{uuid.uuid4().hex}"


def _announce(kind: PaymentEventKind, payment: Payment, amount: Decimal | None = None, detail: str = "") -> None:
    payment_event(PaymentEvent(
        kind=kind, schema_name=_schema(), payment_id=payment.pk, resident_id=payment.resident_id,
        purpose=payment.purpose, reference=payment.reference,
        amount=_q(payment.amount if amount is None else amount, payment.currency), currency=payment.currency,
        detail=detail,
    ))


# --- the ledger ----------------------------------------------------------------------------------


def ledger_post(
    *, resident_id: int, kind: str, amount: Decimal, currency: str, entry_key: str, reference: str = "",
    reason: str = "", by=None, payment: Payment | None = None, refund: Refund | None = None,
    dispute: Dispute | None = None,
) -> tuple[LedgerEntry, bool]:
    """Record one fact on a resident's account, once: a second post with the same ``entry_key`` returns the
    first entry (and False). ``amount`` > 0: the resident owes more. Billing posts statements here (kind
    ``charge``, key ``statement:<id>``)."""
    if kind not in LedgerEntry.Kind.values:
        raise PaymentError(f"ledger entry kind {kind!r} is not one of {', '.join(LedgerEntry.Kind.values)}")
    amount, minor = _exact(amount, currency, positive=False)
    if minor == 0:
        raise PaymentError("a ledger entry of zero records nothing")
    with transaction.atomic():
        entry, created = LedgerEntry.objects.get_or_create(entry_key=entry_key, defaults={
            "resident_id": resident_id, "kind": kind, "amount": amount, "currency": money.currency_code(currency),
            "reference": reference[:100], "reason": reason[:500], "created_by": by, "payment": payment,
            "refund": refund, "dispute": dispute,
        })
    if not created and (entry.amount != amount or entry.resident_id != resident_id):
        logger.error("ledger: %s posted again with different content (%s %s, resident %s); kept the first",
                     entry_key, amount, currency, resident_id)
    return entry, created


@dataclass(frozen=True)
class LedgerPost:
    """One fact for ``ledger_post_many``: the arguments ``ledger_post`` takes (without the links)."""

    resident_id: int
    kind: str
    amount: Decimal
    currency: str
    entry_key: str
    reference: str = ""
    reason: str = ""


def ledger_post_many(posts: list[LedgerPost]) -> int:
    """``ledger_post`` for many facts at once (a month's statements): the same checks and the same
    once-per-``entry_key`` rule, in two queries instead of two per fact; how many entries were created.
    A key posted before is kept as it was (logged if its content differs), as ``ledger_post`` does."""
    rows: dict[str, LedgerEntry] = {}
    for post in posts:
        if post.kind not in LedgerEntry.Kind.values:
            raise PaymentError(f"ledger entry kind {post.kind!r} is not one of {', '.join(LedgerEntry.Kind.values)}")
        amount, minor = _exact(post.amount, post.currency, positive=False)
        if minor == 0:
            raise PaymentError("a ledger entry of zero records nothing")
        if post.entry_key in rows:
            continue  # the first post of a key wins, as with ledger_post called in turn
        rows[post.entry_key] = LedgerEntry(
            resident_id=post.resident_id, kind=post.kind, amount=amount, currency=money.currency_code(post.currency),
            entry_key=post.entry_key, reference=post.reference[:100], reason=post.reason[:500],
        )
    if not rows:
        return 0
    with transaction.atomic():
        existing = {entry.entry_key: entry for entry in
                    LedgerEntry.objects.filter(entry_key__in=list(rows)).only("entry_key", "amount", "resident_id")}
        for key, entry in existing.items():
            new = rows[key]
            if entry.amount != new.amount or entry.resident_id != new.resident_id:
                logger.error("ledger: %s posted again with different content (%s %s, resident %s); kept the first",
                             key, new.amount, new.currency, new.resident_id)
        fresh = [row for key, row in rows.items() if key not in existing]
        # ignore_conflicts: a key posted meanwhile by someone else stays theirs, as with get_or_create.
        LedgerEntry.objects.bulk_create(fresh, batch_size=1000, ignore_conflicts=True)
    return len(fresh)


def adjustment_create(*, resident: Resident, amount: Decimal, by, reason: str, currency: str | None = None,
                      kind: str = LedgerEntry.Kind.ADJUSTMENT) -> LedgerEntry:
    """A manager corrects a resident's account: ``amount`` > 0 adds to what they owe, < 0 takes off.
    ``kind`` is ``adjustment`` or ``credit`` (a goodwill credit, always < 0). Who and why are required."""
    if by is None or not getattr(by, "pk", None):
        raise PaymentError("an adjustment needs the manager who makes it")
    if not reason or not reason.strip():
        raise PaymentError("an adjustment needs a reason")
    if kind not in (LedgerEntry.Kind.ADJUSTMENT, LedgerEntry.Kind.CREDIT):
        raise PaymentError(f"an adjustment is of kind adjustment or credit, not {kind!r}")
    code = _currency(currency)
    amount, minor = _exact(amount, code, positive=False)
    if minor == 0:
        raise PaymentError("an adjustment of zero changes nothing")
    if kind == LedgerEntry.Kind.CREDIT and minor > 0:
        raise PaymentError("a credit takes off what the resident owes: its amount is negative")
    entry, _ = ledger_post(resident_id=resident.pk, kind=kind, amount=amount, currency=code,
                           entry_key=_key("adjustment"), reason=reason.strip(), by=by)
    logger.info("ledger: %s of %s %s for resident %s by %s: %s", kind, amount, code, resident.pk, by.pk, reason)
    return entry


# --- customers and cards ---------------------------------------------------------------------------


def customer_ensure(*, resident: Resident) -> str:
    """The resident's Stripe customer id, created at Stripe the first time (one per resident)."""
    existing = StripeCustomer.objects.filter(resident=resident).values_list("customer_id", flat=True).first()
    if existing:
        return existing
    user = resident.user
    with transaction.atomic():
        # Held while Stripe is asked (once per resident, ever): two requests racing make one customer.
        Resident.objects.select_for_update().get(pk=resident.pk)
        existing = StripeCustomer.objects.filter(resident=resident).values_list("customer_id", flat=True).first()
        if existing:
            return existing
        try:
            customer_id = get_client().customer_create(
                email=user.email, name=getattr(user, "name", "") or "", metadata=_metadata(resident=resident.pk),
                idempotency_key=_key("customer"))
        except StripeUnavailable as exc:
            raise PaymentUnavailable(f"Stripe is not reachable ({exc.message}); try again") from exc
        except StripeError as exc:
            raise PaymentError(f"Stripe refused to create the customer: {exc.message}") from exc
        return StripeCustomer.objects.create(resident=resident, customer_id=customer_id).customer_id


@dataclass(frozen=True)
class SetupStart:
    setup_intent_id: str
    client_secret: str
    publishable_key: str


def payment_method_setup(*, resident: Resident) -> SetupStart:
    """Start saving a card for autopay: the browser confirms the SetupIntent with Stripe.js, then
    ``payment_method_save`` (or the setup_intent.succeeded webhook) keeps the card."""
    customer = customer_ensure(resident=resident)
    client = get_client()
    try:
        intent = client.setup_intent_create(customer=customer, metadata=_metadata(resident=resident.pk),
                                            idempotency_key=_key("setup"))
    except StripeUnavailable as exc:
        raise PaymentUnavailable(f"Stripe is not reachable ({exc.message}); try again") from exc
    except StripeError as exc:
        raise PaymentError(f"Stripe refused: {exc.message}") from exc
    return SetupStart(intent.id, intent.client_secret, client.publishable_key)


def payment_method_save(*, resident: Resident, setup_intent_id: str, make_default: bool = True) -> SavedPaymentMethod:
    """Keep the card of a SetupIntent the browser confirmed: checked against Stripe (this resident's
    customer, succeeded), attached to the customer, and made the autopay card."""
    client = get_client()
    customer = customer_ensure(resident=resident)
    try:
        intent = client.setup_intent_retrieve(setup_intent_id)
        if intent.customer != customer or intent.metadata.get("hoa_schema") != _schema():
            raise PaymentError("this card setup belongs to someone else")
        if intent.status != "succeeded" or not intent.payment_method:
            raise PaymentError(f"the card setup has not succeeded (Stripe says {intent.status})")
        method = client.payment_method_retrieve(intent.payment_method)
        if method.customer != customer:
            # Stripe attaches the card when the setup succeeds; a card left unattached is attached here.
            method = client.payment_method_attach(method.id, customer=customer,
                                                  idempotency_key=f"{_schema()}:attach:{method.id}:{customer}")
    except StripeUnavailable as exc:
        raise PaymentUnavailable(f"Stripe is not reachable ({exc.message}); try again") from exc
    except (StripeRefused, StripeDeclined) as exc:
        raise PaymentError(f"Stripe refused the card: {exc.message}") from exc
    with transaction.atomic():
        Resident.objects.select_for_update().get(pk=resident.pk)
        saved, _ = SavedPaymentMethod.objects.update_or_create(
            payment_method_id=method.id,
            defaults={"resident": resident, "brand": method.brand, "last4": method.last4[-4:],
                      "exp_month": method.exp_month, "exp_year": method.exp_year, "setup_intent_id": intent.id,
                      "removed_at": None},
        )
        if make_default:
            SavedPaymentMethod.objects.filter(resident=resident, is_default=True).exclude(pk=saved.pk).update(
                is_default=False)
            if not saved.is_default:
                saved.is_default = True
                saved.save(update_fields=["is_default"])
    return saved


def autopay_set(*, resident: Resident, card_pk: int | None) -> SavedPaymentMethod | None:
    """Turn autopay on with one of the resident's saved cards (``card_pk``), or off (None): the card stays saved,
    so that autopay can be turned on again without entering it. Statements already being charged are not
    affected; the next due statement follows the choice."""
    with transaction.atomic():
        Resident.objects.select_for_update().get(pk=resident.pk)
        card = None
        if card_pk is not None:
            card = SavedPaymentMethod.objects.filter(pk=card_pk, resident=resident, removed_at__isnull=True).first()
            if card is None:
                raise PaymentError("that card is not one of the resident's saved cards")
        SavedPaymentMethod.objects.filter(resident=resident, is_default=True).exclude(
            pk=card.pk if card is not None else None).update(is_default=False)
        if card is not None and not card.is_default:
            card.is_default = True
            card.save(update_fields=["is_default"])
    return card


# --- payments ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentStart:
    payment_id: int
    payment_intent_id: str
    client_secret: str  # for Stripe.js in the resident's browser; not stored
    publishable_key: str


def _status_of(intent: IntentResult) -> str:
    if intent.status == "requires_payment_method":
        # A fresh intent waits for a card; after a declined attempt Stripe says the same, with the error.
        return Payment.Status.FAILED if (intent.failure_code or intent.failure_message) else \
            Payment.Status.REQUIRES_PAYMENT_METHOD
    return {
        "succeeded": Payment.Status.SUCCEEDED,
        "canceled": Payment.Status.CANCELED,
        "processing": Payment.Status.PROCESSING,
        "requires_capture": Payment.Status.PROCESSING,
        "requires_action": Payment.Status.REQUIRES_ACTION,
        "requires_confirmation": Payment.Status.REQUIRES_CONFIRMATION,
    }.get(intent.status, Payment.Status.PROCESSING)


def _intent_mismatch(payment: Payment, intent: IntentResult) -> str:
    if intent.metadata.get("hoa_schema") != _schema() or intent.metadata.get("hoa_payment") != str(payment.pk):
        return f"PaymentIntent {intent.id} names another payment ({intent.metadata.get('hoa_schema')}, " \
               f"{intent.metadata.get('hoa_payment')})"
    customer = StripeCustomer.objects.filter(resident_id=payment.resident_id).values_list("customer_id", flat=True)
    if intent.customer not in customer:
        return f"PaymentIntent {intent.id} is another customer's ({intent.customer})"
    if payment.payment_intent_id and payment.payment_intent_id != intent.id:
        return f"PaymentIntent {intent.id} is not this payment's ({payment.payment_intent_id})"
    if intent.currency != payment.currency or intent.amount != money.to_minor_units(payment.amount, payment.currency):
        return f"PaymentIntent {intent.id} is for {intent.amount} {intent.currency} (minor units), " \
               f"not {payment.amount} {payment.currency}"
    return ""


def payment_apply_intent(*, payment_id: int, intent: IntentResult) -> Payment:
    """Bring the payment to the state of the PaymentIntent as Stripe returned it; record a success in the
    ledger and announce each change (succeeded, failed) once. Safe to call any number of times."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        problem = _intent_mismatch(payment, intent)
        if problem:
            logger.error("payment %s: %s; nothing changed", payment.pk, problem)
            Payment.objects.filter(pk=payment.pk).update(needs_review=problem[:300], updated_at=timezone.now())
            payment.needs_review = problem[:300]
            return payment
        payment.payment_intent_id = intent.id
        payment.payment_method_id = intent.payment_method or payment.payment_method_id
        new = _status_of(intent)
        old = payment.status
        if old == Payment.Status.SUCCEEDED or new == old:
            # Paid stays paid (refunds and disputes are recorded beside it, not as a status).
            payment.save(update_fields=["payment_intent_id", "payment_method_id", "updated_at"])
            return payment
        payment.status = new
        if new == Payment.Status.SUCCEEDED:
            payment.succeeded_at = timezone.now()
            payment.failure_code = payment.failure_message = ""
            ledger_post(resident_id=payment.resident_id, kind=LedgerEntry.Kind.PAYMENT, amount=-payment.amount,
                        currency=payment.currency, entry_key=f"payment:{payment.pk}:succeeded",
                        reference=payment.reference, reason=f"card payment {intent.id}", payment=payment)
        elif new == Payment.Status.FAILED:
            payment.failure_code = intent.failure_code[:100]
            payment.failure_message = intent.failure_message[:500]
        payment.save()
        if new == Payment.Status.SUCCEEDED:
            _announce("succeeded", payment)
        elif new == Payment.Status.FAILED:
            _announce("failed", payment, detail=payment.failure_code or payment.failure_message)
        logger.info("payment %s (%s): %s -> %s", payment.pk, intent.id, old, new)
    return payment


def _payment_fail(*, payment_id: int, code: str, message: str, intent_id: str = "") -> Payment:
    """A decline Stripe answered without the PaymentIntent (the webhook links it later)."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        if payment.status in (Payment.Status.SUCCEEDED, Payment.Status.FAILED):
            return payment
        payment.status = Payment.Status.FAILED
        payment.failure_code, payment.failure_message = code[:100], message[:500]
        if intent_id and not payment.payment_intent_id:
            payment.payment_intent_id = intent_id
        payment.save()
        _announce("failed", payment, detail=code or message)
    return payment


def _intent_ensure(
    payment: Payment, customer: str, *, off_session: bool = False
) -> tuple[Payment, IntentResult | None]:
    """Create the payment's PaymentIntent (with its stored key), or fetch it again, and apply what Stripe says."""
    client = get_client()
    try:
        if payment.payment_intent_id:
            intent = client.payment_intent_retrieve(payment.payment_intent_id)
        else:
            intent = client.payment_intent_create(
                amount=money.to_minor_units(payment.amount, payment.currency), currency=payment.currency,
                customer=customer, idempotency_key=payment.idempotency_key,
                metadata=_metadata(payment=payment.pk, resident=payment.resident_id, reference=payment.reference),
                payment_method=payment.payment_method_id or None, off_session=off_session,
            )
    except StripeUnavailable as exc:
        # The intent may exist at Stripe: the row keeps its key, and the next try gets the same intent.
        logger.warning("payment %s: Stripe unavailable (%s); the same key is used again next time", payment.pk, exc)
        raise PaymentUnavailable(f"Stripe is not reachable ({exc.message}); try again") from exc
    except StripeDeclined as exc:
        if exc.payment_intent_id:
            try:
                return payment_apply_intent(payment_id=payment.pk,
                                            intent=client.payment_intent_retrieve(exc.payment_intent_id)), None
            except StripeError:
                pass
        return _payment_fail(payment_id=payment.pk, code=exc.code, message=exc.message,
                             intent_id=exc.payment_intent_id), None
    except StripeRefused as exc:
        if not payment.payment_intent_id:
            # Refused as asked (Stripe replays the refusal for this key): the next try is a new payment.
            Payment.objects.filter(pk=payment.pk, status=Payment.Status.CREATING).update(
                status=Payment.Status.CANCELED, failure_code=exc.code[:100], failure_message=exc.message[:500],
                updated_at=timezone.now())
        raise PaymentError(f"Stripe refused the payment: {exc.message}") from exc
    return payment_apply_intent(payment_id=payment.pk, intent=intent), intent


def payment_start(*, resident: Resident, amount: Decimal, reference: str, purpose: str = "statement",
                  currency: str | None = None, by=None) -> PaymentStart:
    """An on-session payment of ``amount`` for ``reference`` (e.g. ``statement:42``): returns the client
    secret the browser confirms with Stripe.js. Asking again for the same open payment returns the same
    PaymentIntent (never a second one)."""
    code = _currency(currency)
    amount, _ = _exact(amount, code)
    if not reference:
        raise PaymentError("a payment needs a reference (what is being paid)")
    customer = customer_ensure(resident=resident)
    with transaction.atomic():
        Resident.objects.select_for_update().get(pk=resident.pk)  # one start at a time per resident
        payment = Payment.objects.filter(
            resident=resident, kind=Payment.Kind.ON_SESSION, reference=reference, amount=amount, currency=code,
            status__in=Payment.OPEN,
        ).order_by("-created_at").first()
        if payment is None:
            payment = Payment.objects.create(
                resident=resident, kind=Payment.Kind.ON_SESSION, amount=amount, currency=code, purpose=purpose,
                reference=reference, idempotency_key=_key("payment"), created_by=by)
    payment, intent = _intent_ensure(payment, customer)
    if intent is None or payment.needs_review:
        raise PaymentError(payment.needs_review or f"the payment could not be started: {payment.failure_message}")
    return PaymentStart(payment.pk, intent.id, intent.client_secret, get_client().publishable_key)


def payment_charge_saved(*, resident: Resident, amount: Decimal, reference: str, purpose: str = "statement",
                         currency: str | None = None, off_session: bool = True) -> Payment:
    """Autopay: charge the resident's default saved card for ``reference`` now. Charged once per reference:
    while one payment for it is open or paid, calling again returns that payment; after a failure, the next
    call is a new attempt (with its own key). A decline is recorded as a failed payment (and announced)."""
    if not off_session:
        raise PaymentError("a saved card is charged off-session; on-session payments use payment_start")
    code = _currency(currency)
    amount, _ = _exact(amount, code)
    card = SavedPaymentMethod.objects.filter(resident=resident, is_default=True, removed_at__isnull=True).first()
    if card is None:
        raise PaymentError("the resident has no saved card for autopay")
    customer = customer_ensure(resident=resident)
    with transaction.atomic():
        Resident.objects.select_for_update().get(pk=resident.pk)
        attempts = Payment.objects.filter(resident=resident, kind=Payment.Kind.OFF_SESSION, reference=reference)
        payment = attempts.exclude(status__in=[Payment.Status.FAILED, Payment.Status.CANCELED]).first()
        if payment is None:
            # Committed with its key before Stripe is asked: a job that runs twice finds this row (and its
            # intent), a retry after a timeout asks Stripe again with the same key, and either is charged once.
            payment = Payment.objects.create(
                resident=resident, kind=Payment.Kind.OFF_SESSION, amount=amount, currency=code, purpose=purpose,
                reference=reference, payment_method_id=card.payment_method_id,
                idempotency_key=_key(f"autopay-{attempts.count() + 1}"))
    if payment.status == Payment.Status.SUCCEEDED:
        return payment
    payment, _ = _intent_ensure(payment, customer, off_session=True)
    return payment


# --- refunds -------------------------------------------------------------------------------------


def refund_create(*, payment: Payment, amount: Decimal, by, reason: str) -> Refund:
    """Give back ``amount`` of a paid payment (a manager, with a reason). Never more than what is left:
    the refund is reserved under a lock on the payment before Stripe is asked, so refunds made at the same
    time cannot add up to more than was paid."""
    if by is None or not getattr(by, "pk", None):
        raise RefundRefused("a refund needs the manager who makes it")
    if not reason or not reason.strip():
        raise RefundRefused("a refund needs a reason")
    with transaction.atomic():
        locked = Payment.objects.select_for_update().get(pk=payment.pk)
        if locked.status != Payment.Status.SUCCEEDED:
            raise RefundRefused(f"only a paid payment can be refunded (this one is {locked.status})")
        try:
            amount, _ = _exact(amount, locked.currency)
        except PaymentError as exc:
            raise RefundRefused(str(exc)) from None
        held = locked.refunds.filter(status__in=[Refund.Status.PENDING, Refund.Status.SUCCEEDED]).aggregate(
            total=Sum("amount"))["total"] or Decimal(0)
        left = _q(locked.amount - held, locked.currency)
        if amount > left:
            raise RefundRefused(f"a refund of {amount} {locked.currency} is more than the {left} {locked.currency} "
                                f"left to refund on this payment of {_q(locked.amount, locked.currency)} "
                                f"{locked.currency}")
        refund = Refund.objects.create(payment=locked, amount=amount, currency=locked.currency,
                                       idempotency_key=_key("refund"), reason=reason.strip(), created_by=by)
    return refund_submit(refund_id=refund.pk)


def refund_submit(*, refund_id: int) -> Refund:
    """Ask Stripe for a reserved refund (again, with the same key, after a timeout)."""
    refund = Refund.objects.select_related("payment").get(pk=refund_id)
    if refund.refund_id or refund.status != Refund.Status.PENDING:
        return refund
    payment = refund.payment
    try:
        result = get_client().refund_create(
            payment_intent=payment.payment_intent_id, amount=money.to_minor_units(refund.amount, refund.currency),
            metadata=_metadata(refund=refund.pk, payment=payment.pk, reference=payment.reference),
            idempotency_key=refund.idempotency_key)
    except StripeUnavailable as exc:
        raise PaymentUnavailable(f"Stripe is not reachable ({exc.message}); the refund is kept pending: "
                                 "submit it again") from exc
    except (StripeRefused, StripeDeclined) as exc:
        Refund.objects.filter(pk=refund.pk, status=Refund.Status.PENDING).update(
            status=Refund.Status.FAILED, failure_reason=exc.message[:200], updated_at=timezone.now())
        raise RefundRefused(f"Stripe refused the refund: {exc.message}") from exc
    return refund_apply(payment_id=payment.pk, result=result)


_REFUND_STATUS = {"succeeded": Refund.Status.SUCCEEDED, "failed": Refund.Status.FAILED,
                  "canceled": Refund.Status.CANCELED}


def refund_apply(*, payment_id: int, result: RefundResult) -> Refund:
    """Record a refund as Stripe returned it: ours (found by id or by its metadata) or one made in Stripe's
    dashboard (recorded with no author). Ledger and announcement once, when it succeeds."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        refund = Refund.objects.select_for_update().filter(refund_id=result.id).first()
        if refund is None and result.metadata.get("hoa_schema") == _schema():
            refund = Refund.objects.select_for_update().filter(
                pk=result.metadata.get("hoa_refund") or 0, payment=payment, refund_id__isnull=True).first()
        if refund is None:
            refund = Refund.objects.create(
                payment=payment, amount=money.from_minor_units(result.amount, payment.currency),
                currency=payment.currency, refund_id=result.id, idempotency_key=f"stripe:{result.id}",
                reason="refunded outside the platform (Stripe dashboard)")
        if refund.payment_id != payment.pk or money.to_minor_units(refund.amount, refund.currency) != result.amount:
            logger.error("refund %s: Stripe's %s is for %s minor units of payment %s; nothing changed",
                         refund.pk, result.id, result.amount, payment.pk)
            return refund
        refund.refund_id = result.id
        old, new = refund.status, _REFUND_STATUS.get(result.status, Refund.Status.PENDING)
        refund.status = new
        refund.failure_reason = result.failure_reason[:200]
        refund.save()
        if new == Refund.Status.SUCCEEDED and old != new:
            _, posted = ledger_post(
                resident_id=payment.resident_id, kind=LedgerEntry.Kind.REFUND, amount=refund.amount,
                currency=refund.currency, entry_key=f"refund:{result.id}", reference=payment.reference,
                reason=refund.reason, by=refund.created_by, payment=payment, refund=refund)
            if posted:
                Payment.objects.filter(pk=payment.pk).update(amount_refunded=F("amount_refunded") + refund.amount,
                                                             updated_at=timezone.now())
                _announce("refunded", payment, amount=refund.amount, detail=refund.reason)
        elif old == Refund.Status.SUCCEEDED and new in (Refund.Status.FAILED, Refund.Status.CANCELED):
            # Stripe could not return the money after all (a closed card account): the resident has it back to pay.
            _, posted = ledger_post(
                resident_id=payment.resident_id, kind=LedgerEntry.Kind.REFUND, amount=-refund.amount,
                currency=refund.currency, entry_key=f"refund:{result.id}:{new}", reference=payment.reference,
                reason=f"refund {new}: {result.failure_reason}", payment=payment, refund=refund)
            if posted:
                Payment.objects.filter(pk=payment.pk).update(amount_refunded=F("amount_refunded") - refund.amount,
                                                             updated_at=timezone.now())
                _announce("refund_failed", payment, amount=refund.amount, detail=result.failure_reason)
    return refund


# --- disputes ------------------------------------------------------------------------------------


def dispute_apply(*, payment_id: int, result: DisputeResult) -> Dispute:
    """Record a chargeback as Stripe returned it. Funds withdrawn (any status but an inquiry's) are owed again;
    a won dispute gives them back. Each once, and announced."""
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment_id)
        amount = money.from_minor_units(result.amount, payment.currency)
        dispute, _ = Dispute.objects.select_for_update().get_or_create(dispute_id=result.id, defaults={
            "payment": payment, "amount": amount, "currency": payment.currency, "status": result.status,
            "reason": result.reason[:64]})
        if dispute.payment_id != payment.pk:
            logger.error("dispute %s is on payment %s, not %s; nothing changed", result.id, dispute.payment_id,
                         payment.pk)
            return dispute
        old = dispute.status
        dispute.status, dispute.amount = result.status, amount
        dispute.save()
        withdrawn = not result.status.startswith("warning_")
        if withdrawn:
            _, posted = ledger_post(
                resident_id=payment.resident_id, kind=LedgerEntry.Kind.DISPUTE, amount=amount,
                currency=payment.currency,
                entry_key=f"dispute:{result.id}:withdrawn", reference=payment.reference,
                reason=f"chargeback ({result.reason or 'no reason given'})", payment=payment, dispute=dispute)
            if posted:
                Payment.objects.filter(pk=payment.pk).update(amount_disputed=F("amount_disputed") + amount,
                                                             updated_at=timezone.now())
                _announce("disputed", payment, amount=amount, detail=result.status)
        if result.status == "won" and withdrawn:
            _, posted = ledger_post(
                resident_id=payment.resident_id, kind=LedgerEntry.Kind.DISPUTE_REVERSAL, amount=-amount,
                currency=payment.currency, entry_key=f"dispute:{result.id}:reinstated", reference=payment.reference,
                reason="chargeback won: funds returned", payment=payment, dispute=dispute)
            if posted:
                Payment.objects.filter(pk=payment.pk).update(amount_disputed=F("amount_disputed") - amount,
                                                             updated_at=timezone.now())
                _announce("dispute_closed", payment, amount=amount, detail="won")
        elif result.status == "lost" and old != "lost":
            _announce("dispute_closed", payment, amount=amount, detail="lost")
    return dispute


# --- webhooks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookReceipt:
    event_id: str
    type: str
    stored: bool  # False: seen before (a replay or a redelivery); nothing more happens


def _queue_webhook(event_pk: int) -> None:
    from apps.payments.tasks import process_stripe_event

    process_stripe_event.delay(event_pk)


def webhook_receive(*, payload: bytes, signature: str | None) -> WebhookReceipt:
    """Verify a Stripe webhook on its raw body, store the event once, and queue its processing on commit.
    Raises WebhookSignatureInvalid (nothing stored) when the signature does not verify or is too old."""
    event: VerifiedEvent = get_client().event_verify(payload, signature)
    with in_public_schema(), transaction.atomic():
        row, created = WebhookEvent.objects.get_or_create(
            source=WebhookEvent.Source.STRIPE, event_id=event.id,
            defaults={"type": event.type[:100], "livemode": event.livemode, "payload": event.payload})
        if created:
            # robust: a broker that is down must not lose the event; the sweep (webhooks_process_pending) retries.
            transaction.on_commit(lambda: _queue_webhook(row.pk), robust=True)
    if not created:
        logger.info("stripe webhook %s (%s) seen before; ignored", event.id, event.type)
    return WebhookReceipt(event.id, event.type, created)


@dataclass(frozen=True)
class _Plan:
    """What an event asks for, decided from objects re-fetched from Stripe (before any lock is taken)."""

    schema: str
    payment_id: int
    intent: IntentResult
    refunds: tuple[RefundResult, ...] = ()
    dispute: DisputeResult | None = None
    setup_intent_id: str = ""


def _known_schema(schema: str) -> bool:
    if not schema:
        return False
    with in_public_schema():
        return Condominium.objects.filter(schema_name=schema).exclude(schema_name="public").exists()


def _plan(event: dict) -> _Plan | str:
    """Re-fetch what the event is about. Returns the plan, or why there is nothing to do."""
    client = get_client()
    kind = str(event.get("type", ""))
    obj = (event.get("data") or {}).get("object") or {}
    object_type, object_id = obj.get("object"), obj.get("id")
    intent_id, dispute, refunds = "", None, ()
    if object_type == "payment_intent":
        intent_id = object_id
    elif object_type == "charge":
        intent_id = obj.get("payment_intent") or ""
        if not intent_id and object_id:
            intent_id = client.charge_retrieve(object_id).payment_intent
    elif object_type == "refund":
        intent_id = obj.get("payment_intent") or ""
        if not intent_id and obj.get("charge"):
            intent_id = client.charge_retrieve(obj["charge"]).payment_intent
    elif object_type == "dispute":
        dispute = client.dispute_retrieve(object_id)
        intent_id = dispute.payment_intent
        if not intent_id and dispute.charge:
            intent_id = client.charge_retrieve(dispute.charge).payment_intent
    elif object_type == "setup_intent":
        setup = client.setup_intent_retrieve(object_id)
        if setup.status != "succeeded":
            return f"setup intent {setup.status}"
        return _Plan(schema=setup.metadata.get("hoa_schema", ""), payment_id=0,
                     intent=IntentResult("", "", 0, "", setup.customer, "", "", "", setup.metadata),
                     setup_intent_id=setup.id)
    else:
        return f"not handled ({kind})"
    if not intent_id:
        return f"{kind}: no PaymentIntent (not a payment of ours)"
    intent = client.payment_intent_retrieve(intent_id)
    if object_type in ("charge", "refund") or kind.startswith("charge.refund"):
        refunds = tuple(client.refunds_of(intent.id))
    schema, payment = intent.metadata.get("hoa_schema", ""), intent.metadata.get("hoa_payment", "")
    if not payment.isdigit():
        return f"PaymentIntent {intent.id} is not one of ours"
    return _Plan(schema=schema, payment_id=int(payment), intent=intent, refunds=refunds, dispute=dispute)


def _apply(plan: _Plan) -> str:
    """In the building's schema, inside the transaction that marks the event processed."""
    if plan.setup_intent_id:
        customer = StripeCustomer.objects.select_related("resident").filter(customer_id=plan.intent.customer).first()
        if customer is None or plan.intent.metadata.get("hoa_resident") != str(customer.resident_id):
            return "setup intent of no resident here"
        saved = payment_method_save(resident=customer.resident, setup_intent_id=plan.setup_intent_id)
        return f"card {saved.payment_method_id} saved"
    if not Payment.objects.filter(pk=plan.payment_id).exists():
        return f"payment {plan.payment_id} not found in {plan.schema}"
    payment = payment_apply_intent(payment_id=plan.payment_id, intent=plan.intent)
    if payment.needs_review:
        return f"needs review: {payment.needs_review}"[:200]
    done = [f"payment {payment.pk} {payment.status}"]
    if plan.refunds and payment.status == Payment.Status.SUCCEEDED:
        for result in plan.refunds:
            refund_apply(payment_id=payment.pk, result=result)
        done.append(f"{len(plan.refunds)} refund(s)")
    if plan.dispute is not None:
        dispute = dispute_apply(payment_id=payment.pk, result=plan.dispute)
        done.append(f"dispute {dispute.status}")
    return ", ".join(done)


def webhook_process(*, event_pk: int) -> str:
    """Process one stored event exactly once: re-fetch from Stripe, then, in one transaction, apply it in
    the building's schema and mark the event processed. A second worker (or a second run) finds it done.
    Raises StripeUnavailable when Stripe cannot be asked (the task retries later)."""
    with in_public_schema():
        row = WebhookEvent.objects.filter(pk=event_pk).first()
        if row is None:
            return "gone"
        if row.processed_at is not None:
            return row.result
        WebhookEvent.objects.filter(pk=event_pk).update(attempts=F("attempts") + 1)
        try:
            return _webhook_process(row)
        except Exception as exc:
            # Kept for whoever looks (admin, logs); the task or the sweep tries again later.
            WebhookEvent.objects.filter(pk=event_pk).update(last_error=f"{type(exc).__name__}: {exc}"[:2000])
            raise


def _webhook_process(row: WebhookEvent) -> str:
    try:
        plan = _plan(row.payload)
    except StripeUnavailable:
        raise
    except StripeError as exc:  # the object is gone or was never ours: nothing to apply
        plan = f"Stripe refused the re-fetch: {exc.message}"
    if isinstance(plan, _Plan) and not _known_schema(plan.schema):
        plan = f"no building {plan.schema!r}"
    with transaction.atomic():
        row = WebhookEvent.objects.select_for_update().get(pk=row.pk)
        if row.processed_at is not None:
            return row.result  # another worker got there first
        if isinstance(plan, _Plan):
            with in_schema(plan.schema):
                result = _apply(plan)
            row.schema_name = plan.schema
        else:
            result = plan
        row.processed_at = timezone.now()
        row.result = result[:200]
        row.last_error = ""
        row.save(update_fields=["processed_at", "result", "schema_name", "last_error"])
    logger.info("stripe event %s (%s): %s", row.event_id, row.type, result)
    return result


# An event that failed this often is left for a person (its last_error says why) instead of being retried forever.
WEBHOOK_MAX_ATTEMPTS = 25


def webhooks_pending(*, older_than_seconds: int = 60) -> list[int]:
    """Stored events not processed yet (a broker that was down when they came): for the periodic sweep."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    with in_public_schema():
        return list(WebhookEvent.objects.filter(processed_at__isnull=True, received_at__lt=cutoff,
                                                attempts__lt=WEBHOOK_MAX_ATTEMPTS)
                    .order_by("received_at").values_list("pk", flat=True)[:500])
