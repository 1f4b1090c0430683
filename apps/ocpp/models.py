"""The OCPP frame log (tenant schema): every frame in and out, append-only; the remote operations people sent."""

from __future__ import annotations

import json

from django.db import models
from django.utils.translation import gettext_lazy as _


class OcppFrame(models.Model):
    """One websocket text frame exchanged with a charger, kept verbatim.

    Rows are only ever inserted (in batches, see apps.ocpp.framelog) and deleted
    by the retention task; nothing updates them.
    """

    class Direction(models.TextChoices):
        IN = "in", "Charger to platform"
        OUT = "out", "Platform to charger"

    charge_point_id = models.CharField(max_length=64)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_type = models.PositiveSmallIntegerField(null=True, blank=True, help_text="2 CALL, 3 RESULT, 4 ERROR.")
    action = models.CharField(max_length=64, blank=True)
    unique_id = models.CharField(max_length=64, blank=True)
    raw = models.TextField()
    received_at = models.DateTimeField(help_text="Server time the frame was received or sent.")

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [
            models.Index(fields=["charge_point_id", "received_at"]),
            models.Index(fields=["received_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point_id} {self.direction} {self.action or self.message_type}"


class RemoteOperation(models.Model):
    """A command a person sent to a charger (the console's operations, the commands API): who, when, what, and
    the charger's answer. Written before the command goes (``pending``), completed when the answer comes; kept as
    the building's audit trail (apps/ocpp/operations.py)."""

    class Outcome(models.TextChoices):
        PENDING = "pending", _("Sent, no answer yet")
        ACCEPTED = "accepted", _("Accepted")
        REFUSED = "refused", _("Refused by the charger")
        NOT_CONNECTED = "not_connected", _("Charger not connected")
        TIMEOUT = "timeout", _("No answer in time")
        INVALID = "invalid", _("Refused as invalid (never sent)")
        ERROR = "error", _("Answered with an error")

    requested_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True, help_text="The person (public schema's user).")
    user_email = models.CharField(max_length=254, help_text="As it was when they sent it.")
    via = models.CharField(max_length=16, help_text="console or api")
    charge_point_id = models.CharField(max_length=64)
    connector_number = models.PositiveSmallIntegerField(null=True, blank=True)
    action = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.PENDING)
    answer = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["charge_point_id", "requested_at"])]

    def __str__(self) -> str:
        return f"{self.requested_at:%Y-%m-%d %H:%M:%S} {self.user_email}: {self.action} {self.charge_point_id}"

    @property
    def payload_text(self) -> str:
        return json.dumps(self.payload, sort_keys=True)

    @property
    def answer_text(self) -> str:
        return json.dumps(self.answer, sort_keys=True) if self.answer else ""
