"""Visitors: a public code per connector (the QR label) and each visit paid by card pre-authorization."""

from __future__ import annotations

from django.db import models


class VisitorCode(models.Model):
    """The connector's public code: /v/<code> on the building's host. Stable, so printed labels stay valid."""

    connector = models.OneToOneField("charging.Connector", on_delete=models.CASCADE, related_name="visitor_code")
    code = models.SlugField(max_length=16, unique=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"visitor code {self.code}"


class Visit(models.Model):
    """One visitor's session: the card authorization, the one-time idTag, the session, the capture, the receipt."""

    class Status(models.TextChoices):
        CREATED = "created", "Created"  # the PaymentIntent exists; the browser has not confirmed it yet
        AUTHORIZED = "authorized", "Authorized"  # the amount is held on the card
        STARTING = "starting", "Starting"  # RemoteStartTransaction accepted, waiting for StartTransaction
        CHARGING = "charging", "Charging"
        COMPLETED = "completed", "Completed"  # the session stopped; not settled yet
        CAPTURED = "captured", "Captured"  # paid (part of the authorization captured, the rest released)
        CANCELLED = "cancelled", "Cancelled"  # the authorization released: nothing charged
        FAILED = "failed", "Failed"  # needs a manager (see note)

    code = models.ForeignKey(VisitorCode, on_delete=models.PROTECT, related_name="visits")
    connector = models.ForeignKey("charging.Connector", on_delete=models.PROTECT, related_name="visits")
    token = models.CharField(max_length=64, unique=True, help_text="The visit's secret in its URLs.")
    email = models.EmailField()
    language = models.CharField(max_length=8, default="en")
    currency = models.CharField(max_length=3)
    quote_total = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True,
                                      help_text="The typical session's price shown on the page.")
    quote_energy_wh = models.BigIntegerField(null=True, blank=True)
    authorized_amount = models.DecimalField(max_digits=12, decimal_places=4)
    payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    card_brand = models.CharField(max_length=32, blank=True)
    card_last4 = models.CharField(max_length=4, blank=True)
    id_tag = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    session = models.OneToOneField("charging.ChargingSession", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="visit")
    price_total = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    captured_amount = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    shortfall = models.DecimalField(max_digits=12, decimal_places=4, default=0,
                                    help_text="Priced above the authorization: not collected, for managers.")
    charger_answer = models.CharField(max_length=32, blank=True, help_text="RemoteStartTransaction's answer.")
    note = models.TextField(blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    start_requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"visit {self.pk} ({self.status})"
