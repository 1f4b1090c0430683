"""Webhook events received from outside the platform (public schema).

A Stripe event reaches one address for the whole platform, before anyone knows which building it
concerns: like a charger's handshake (tenancy.ChargerRegistration), it is stored where every building's
work can find it. Each event is stored once (its id is unique), and processed once: the worker that
handles it sets ``processed_at`` in the same transaction as the changes it makes in the building's schema
(apps/payments/services.py).
"""

from __future__ import annotations

from django.db import models


class WebhookEvent(models.Model):
    class Source(models.TextChoices):
        STRIPE = "stripe", "Stripe"

    source = models.CharField(max_length=16, choices=Source.choices)
    event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField(help_text="The event as received (its signature was verified on the raw body).")
    received_at = models.DateTimeField(auto_now_add=True)
    # The building's schema, once processing has found it (from the object re-fetched from Stripe).
    schema_name = models.CharField(max_length=63, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=200, blank=True, help_text="What processing did, or why it did nothing.")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["source", "event_id"], name="webhook_event_unique")]
        indexes = [models.Index(fields=["processed_at", "received_at"], name="webhook_event_pending")]

    def __str__(self) -> str:
        return f"{self.source} {self.event_id} ({self.type})"
