"""Monthly statements, credit notes and their PDFs (tenant schema).

A statement is made as a draft when its building's month closes, then finalized: it gets the next
number of its series (gapless per building) and from then on never changes. Corrections are credit
notes, with numbers of their own. The PDF is rendered once and kept with its SHA-256.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

MONEY = {"max_digits": 14, "decimal_places": 3}


class BillingPeriod(models.Model):
    """One calendar month of the building, in its own time zone; closed exactly once."""

    class Status(models.TextChoices):
        OPEN = "open", pgettext_lazy("billing period", "Open")
        CLOSING = "closing", _("Closing")
        CLOSED = "closed", _("Closed")

    month = models.DateField(unique=True, help_text="The first day of the month.")
    starts_at = models.DateTimeField(help_text="Local midnight on the 1st, as an instant.")
    ends_at = models.DateTimeField(help_text="Local midnight on the 1st of the next month.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="A worker closing it holds it until then.")
    closed_at = models.DateTimeField(null=True, blank=True)
    statements_made = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month"]

    def __str__(self) -> str:
        return self.month.strftime("%Y-%m")


class NumberSeries(models.Model):
    """The last number handed out in a series. Locked while a statement is finalized, so that two
    finalizations never share a number and a rolled-back one leaves no gap."""

    kind = models.CharField(max_length=16, unique=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.kind}: {self.last_number}"


class Statement(models.Model):
    class Kind(models.TextChoices):
        STATEMENT = "statement", _("Statement")
        CREDIT_NOTE = "credit_note", _("Credit note")

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        OPEN = "open", _("Awaiting payment")
        PAID = "paid", _("Paid")
        PAST_DUE = "past_due", _("Past due")
        VOID = "void", _("Void")
        ISSUED = "issued", _("Issued")  # credit notes: nothing to pay

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.STATEMENT)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    resident = models.ForeignKey("buildings.Resident", on_delete=models.PROTECT, related_name="statements")
    period = models.ForeignKey(BillingPeriod, null=True, blank=True, on_delete=models.PROTECT,
                               related_name="statements")
    corrects = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="credit_notes", help_text="For a credit note: the statement it corrects.")
    number = models.CharField(max_length=32, blank=True, help_text="Given at finalization.")
    sequence = models.PositiveIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    language = models.CharField(max_length=8, default="en")
    subtotal = models.DecimalField(**MONEY, default=Decimal("0"))
    tax = models.DecimalField(**MONEY, default=Decimal("0"))
    total = models.DecimalField(**MONEY, default=Decimal("0"))
    amount_paid = models.DecimalField(**MONEY, default=Decimal("0"))
    amount_credited = models.DecimalField(**MONEY, default=Decimal("0"), help_text="Lowered by credit notes.")
    prices_include_tax = models.BooleanField(default=False, help_text="Lines are shown tax included.")
    reason = models.TextField(blank=True, help_text="For a credit note: why.")
    # What the document says about the parties, frozen at finalization.
    parties = models.JSONField(default=dict, blank=True)
    issued_on = models.DateField(null=True, blank=True)
    due_on = models.DateField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0, help_text="Payment reminders mailed so far.")
    last_reminder_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="Empty when the platform made it.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period__month", "number", "id"]
        constraints = [
            # One monthly statement per resident and month, however often the month is closed.
            models.UniqueConstraint(fields=["resident", "period"], condition=models.Q(kind="statement"),
                                    name="statement_one_per_resident_and_month"),
            models.UniqueConstraint(fields=["kind", "sequence"], name="statement_sequence_unique"),
            models.UniqueConstraint(fields=["number"], condition=~models.Q(number=""), name="statement_number_unique"),
            models.CheckConstraint(
                condition=models.Q(status="draft") | ~models.Q(number=""), name="statement_finalized_has_number"
            ),
        ]

    def __str__(self) -> str:
        return self.number or f"draft {self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status != self.Status.DRAFT

    @property
    def amount_due(self) -> Decimal:
        if self.kind == self.Kind.CREDIT_NOTE or self.status == self.Status.VOID:
            return Decimal("0")
        return max(self.total - self.amount_paid - self.amount_credited, Decimal("0"))


class StatementLine(models.Model):
    class Kind(models.TextChoices):
        SESSION = "session", _("Charging session")
        IDLE = "idle", _("Idle fee")
        SERVICE_FEE = "service_fee", _("Monthly service fee")
        CREDIT = "credit", _("Credit")
        ADJUSTMENT = "adjustment", _("Adjustment")
        TRUE_UP = "true_up", _("True-up")

    statement = models.ForeignKey(Statement, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.CharField(max_length=300)
    session = models.ForeignKey("charging.ChargingSession", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    prior_period = models.BooleanField(default=False, help_text="A session of an earlier month that arrived late.")
    occurred_at = models.DateTimeField(null=True, blank=True)
    connector_label = models.CharField(max_length=80, blank=True)
    energy_wh = models.BigIntegerField(null=True, blank=True)
    duration_s = models.PositiveIntegerField(null=True, blank=True)
    window = models.CharField(max_length=120, blank=True, help_text="The tariff window or rate that applied.")
    quantity = models.DecimalField(max_digits=16, decimal_places=4, default=Decimal("1"))
    unit = models.CharField(max_length=16, blank=True)
    unit_price = models.DecimalField(max_digits=14, decimal_places=5, default=Decimal("0"))
    amount = models.DecimalField(**MONEY)
    tax_rate = models.DecimalField(max_digits=6, decimal_places=4, default=Decimal("0"))
    tax = models.DecimalField(**MONEY, default=Decimal("0"))

    class Meta:
        ordering = ["statement", "position"]
        constraints = [models.UniqueConstraint(fields=["statement", "position"], name="statement_line_position")]

    def __str__(self) -> str:
        return self.description

    @property
    def gross(self) -> Decimal:
        return self.amount + self.tax


class StatementDocument(models.Model):
    """The rendered PDF of a finalized statement: made once, never replaced."""

    statement = models.OneToOneField(Statement, on_delete=models.PROTECT, related_name="document")
    pdf = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    language = models.CharField(max_length=8)
    rendered_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.statement} ({self.sha256[:12]})"


class BilledCharge(models.Model):
    """A priced session on the statement that billed it: at most one, ever (the unique key)."""

    charge = models.OneToOneField("billing.SessionCharge", on_delete=models.PROTECT, related_name="billed")
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="billed_charges")

    def __str__(self) -> str:
        return f"{self.charge_id} on {self.statement}"


class PaymentAllocation(models.Model):
    """Money of one payment applied to one statement (or, with no statement, not applied yet: a credit the
    next statement takes). A refund or chargeback takes back the payment's allocations, newest first."""

    payment_id = models.PositiveIntegerField(help_text="payments.Payment")
    resident = models.ForeignKey("buildings.Resident", on_delete=models.PROTECT, related_name="+")
    statement = models.ForeignKey(Statement, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="allocations")
    amount = models.DecimalField(**MONEY)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["payment_id"]), models.Index(fields=["resident", "statement"])]

    def __str__(self) -> str:
        return f"payment {self.payment_id}: {self.amount} to {self.statement_id}"
