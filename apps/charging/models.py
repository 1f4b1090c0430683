"""Chargers and their connectors (tenant schema)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class ChargePoint(models.Model):
    """One OCPP charger. ``charge_point_id`` is unique platform-wide (see ChargerRegistration).

    A charger removed from the commissioning file is marked ``removed_at`` and
    keeps its sessions and meter history.
    """

    charge_point_id = models.CharField(max_length=64, unique=True)
    circuit = models.ForeignKey("electrical.Circuit", on_delete=models.PROTECT, related_name="charge_points")
    enabled = models.BooleanField(default=True, help_text="A disabled charger gets Pending at boot.")
    removed_at = models.DateTimeField(null=True, blank=True)
    vendor = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=64, blank=True)
    serial_number = models.CharField(max_length=64, blank=True)
    firmware_version = models.CharField(max_length=64, blank=True)
    meter_type = models.CharField(max_length=64, blank=True)
    meter_serial_number = models.CharField(max_length=64, blank=True)
    iccid = models.CharField(max_length=32, blank=True)
    imsi = models.CharField(max_length=32, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    is_online = models.BooleanField(default=False)
    configuration = models.JSONField(default=dict, blank=True, help_text="Keys read with GetConfiguration.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge_point_id"]

    def __str__(self) -> str:
        return self.charge_point_id


class Connector(models.Model):
    """One charging gun. ``connector_id`` is the OCPP connectorId (1, 2, ...)."""

    class PhaseRotation(models.TextChoices):
        # Single-phase connectors: the grid phase their L1 is wired to.
        L1 = "L1", "L1"
        L2 = "L2", "L2"
        L3 = "L3", "L3"
        # Three-phase connectors: grid phases wired to the connector's L1, L2, L3 (OCPP 2.0 notation).
        RST = "RST", "RST (L1, L2, L3)"
        RTS = "RTS", "RTS (L1, L3, L2)"
        SRT = "SRT", "SRT (L2, L1, L3)"
        STR = "STR", "STR (L2, L3, L1)"
        TRS = "TRS", "TRS (L3, L1, L2)"
        TSR = "TSR", "TSR (L3, L2, L1)"

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.PositiveSmallIntegerField()
    parking_spot = models.ForeignKey(
        "buildings.ParkingSpot", null=True, blank=True, on_delete=models.SET_NULL, related_name="connectors"
    )
    is_dc = models.BooleanField(default=False)
    phases = models.PositiveSmallIntegerField(default=1)
    phase_rotation = models.CharField(max_length=3, choices=PhaseRotation.choices, default=PhaseRotation.L1)
    min_current_a = models.DecimalField(max_digits=5, decimal_places=1, default=Decimal("6"))
    max_current_a = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    min_power_w = models.PositiveIntegerField(null=True, blank=True)
    max_power_w = models.PositiveIntegerField(null=True, blank=True)
    efficiency = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    status = models.CharField(max_length=32, blank=True, help_text="Last OCPP status.")
    error_code = models.CharField(max_length=32, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge_point__charge_point_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(fields=["charge_point", "connector_id"], name="connector_unique_per_charger"),
            models.CheckConstraint(condition=models.Q(connector_id__gte=1), name="connector_id_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point.charge_point_id}#{self.connector_id}"
