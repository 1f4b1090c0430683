"""Payments through Stripe and the residents' account ledger (tenant schema).

The platform is the system of record: Stripe moves the money, these rows say what happened and why.
Money is Decimal in the currency's major unit (USD 12.34, JPY 370); integer minor units exist only at
the Stripe boundary (apps/payments/money.py, stripe_client.py).

The ledger (LedgerEntry) is the resident's account: every charge (statements, later), payment, refund,
dispute, credit and manual adjustment is one entry, with who and why. The balance is derived (the sum),
never stored. Each entry has a unique ``entry_key`` naming the fact it records (``payment:42:succeeded``,
``refund:re_123``), so a fact that arrives twice (a webhook and the API's own answer, a replayed event,
two workers) is recorded once.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.buildings.models import Resident

# Up to 99,999,999 minor units in three-decimal currencies (Stripe's ceiling), so 12 digits with 3 decimals.
AMOUNT = {"max_digits": 15, "decimal_places": 3}


class StripeCustomer(models.Model):
    """The resident's customer at Stripe (one per resident: cards and payments hang off it)."""

    resident = models.OneToOneField(Resident, on_delete=models.PROTECT, related_name="stripe_customer")
    customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.customer_id


class SavedPaymentMethod(models.Model):
    """A card the resident saved for autopay (through a SetupIntent). Only Stripe holds the card itself."""

    resident = models.ForeignKey(Resident, on_delete=models.PROTECT, related_name="saved_payment_methods")
    payment_method_id = models.CharField(max_length=255, unique=True)
    brand = models.CharField(max_length=32, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False, help_text="The card autopay charges.")
    setup_intent_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_default", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["resident"], condition=Q(is_default=True, removed_at__isnull=True),
                                    name="one_default_payment_method_per_resident"),
        ]

    def __str__(self) -> str:
        return f"{self.brand} ...{self.last4}"


class Payment(models.Model):
    """One attempt to collect money from a resident (a PaymentIntent at Stripe)."""

    class Kind(models.TextChoices):
        ON_SESSION = "on_session", "Paid by the resident (card entered in the browser)"
        OFF_SESSION = "off_session", "Autopay (saved card, charged by the platform)"

    class Status(models.TextChoices):
        CREATING = "creating", "Being created at Stripe"
        REQUIRES_PAYMENT_METHOD = "requires_payment_method", "Waiting for a card"
        REQUIRES_CONFIRMATION = "requires_confirmation", "Waiting for confirmation"
        REQUIRES_ACTION = "requires_action", "Waiting for the resident (3-D Secure)"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Paid"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    OPEN = (Status.CREATING, Status.REQUIRES_PAYMENT_METHOD, Status.REQUIRES_CONFIRMATION, Status.REQUIRES_ACTION,
            Status.PROCESSING)

    resident = models.ForeignKey(Resident, on_delete=models.PROTECT, related_name="payments")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    # What is being paid, generically, so that features above this one (statements) plug in without a
    # foreign key down here: "statement:<id>", "balance", ... The hook (apps/payments/events.py) carries it.
    purpose = models.CharField(max_length=32)
    reference = models.CharField(max_length=100)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.CREATING)
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    payment_method_id = models.CharField(max_length=255, blank=True)
    # Sent with the PaymentIntent's creation; a retry after a timeout sends it again and Stripe answers
    # with the same PaymentIntent instead of making a second one.
    idempotency_key = models.CharField(max_length=255, unique=True)
    amount_refunded = models.DecimalField(default=Decimal(0), **AMOUNT)
    amount_disputed = models.DecimalField(default=Decimal(0), **AMOUNT)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    needs_review = models.CharField(max_length=300, blank=True,
                                    help_text="Why Stripe's answer did not match this payment (nothing was changed).")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["reference", "status"], name="payment_reference_status")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=models.F("amount")),
                                   name="payment_refunded_within_amount"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} {self.reference} ({self.status})"


class Refund(models.Model):
    """Money given back on a payment, by a manager (who and why) or from Stripe's dashboard."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"  # asked for (or its outcome not known yet): counts against the payment
        SUCCEEDED = "succeeded", "Refunded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    reason = models.CharField(max_length=500)
    failure_reason = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="Empty: made outside the platform (Stripe's dashboard).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive")]

    def __str__(self) -> str:
        return f"refund {self.amount} {self.currency} ({self.status})"


class Dispute(models.Model):
    """A chargeback the resident's bank opened on a payment."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="disputes")
    dispute_id = models.CharField(max_length=255, unique=True)
    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32)
    reason = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"dispute {self.dispute_id} ({self.status})"


class LedgerEntry(models.Model):
    """One line of a resident's account. ``amount`` > 0: the resident owes more; < 0: owes less."""

    class Kind(models.TextChoices):
        CHARGE = "charge", "Charge"  # a statement (posted by billing)
        PAYMENT = "payment", "Payment"
        REFUND = "refund", "Refund"
        DISPUTE = "dispute", "Chargeback"
        DISPUTE_REVERSAL = "dispute_reversal", "Chargeback reversed (won)"
        CREDIT = "credit", "Credit"
        ADJUSTMENT = "adjustment", "Adjustment"

    resident = models.ForeignKey(Resident, on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    amount = models.DecimalField(**AMOUNT)
    currency = models.CharField(max_length=3)
    entry_key = models.CharField(max_length=255, unique=True, help_text="The fact this entry records, once.")
    reference = models.CharField(max_length=100, blank=True)
    payment = models.ForeignKey(Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries")
    refund = models.ForeignKey(Refund, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries")
    dispute = models.ForeignKey(Dispute, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries")
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="Empty: the platform recorded it (Stripe, billing).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        verbose_name_plural = "ledger entries"
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="ledger_amount_not_zero")]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency}"
