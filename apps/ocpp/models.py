"""The OCPP frame log (tenant schema): every frame in and out, append-only."""

from __future__ import annotations

from django.db import models


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
