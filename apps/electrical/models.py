"""The building's electrical tree and its site meter (tenant schema).

supply (main breaker / transformer) -> circuits (sub-panels, cabinets) -> connectors.
Limits are per phase, in amperes with one decimal; power limits are integer W.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class Circuit(models.Model):
    """A node of the electrical tree. The root (``parent`` empty) is the supply."""

    SUPPLY_KEY = "supply"

    key = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    voltage_v = models.PositiveIntegerField(default=230, help_text="Phase-to-neutral voltage.")
    phases = models.PositiveSmallIntegerField(default=3)
    max_current_l1_a = models.DecimalField(max_digits=7, decimal_places=1)
    max_current_l2_a = models.DecimalField(max_digits=7, decimal_places=1)
    max_current_l3_a = models.DecimalField(max_digits=7, decimal_places=1)
    max_power_w = models.PositiveIntegerField(null=True, blank=True)
    derate = models.DecimalField(max_digits=4, decimal_places=3, default=Decimal("1"))
    margin_a = models.DecimalField(max_digits=6, decimal_places=1, default=Decimal("0"))
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(
                fields=["parent"], condition=models.Q(parent__isnull=True), name="circuit_single_supply"
            ),
            models.CheckConstraint(
                condition=models.Q(derate__gt=0, derate__lte=1), name="circuit_derate_range"
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def is_supply(self) -> bool:
        return self.parent_id is None

    @property
    def max_current_a(self) -> tuple[Decimal, Decimal, Decimal]:
        return (self.max_current_l1_a, self.max_current_l2_a, self.max_current_l3_a)


class SiteMeter(models.Model):
    """The sensor at the main panel that reports the building's total load."""

    class Source(models.TextChoices):
        API = "api", "HTTP push"
        OCPP = "ocpp", "OCPP meter"
        MODBUS = "modbus", "Modbus TCP"

    key = models.SlugField(max_length=64, unique=True)
    circuit = models.ForeignKey(Circuit, on_delete=models.PROTECT, related_name="site_meters")
    source = models.CharField(max_length=16, choices=Source.choices)
    token_hash = models.CharField(max_length=256, blank=True, help_text="For HTTP push: hashed bearer token.")
    stale_after_s = models.PositiveIntegerField(default=15)
    settings = models.JSONField(default=dict, blank=True, help_text="Source-specific: Modbus host, port, unit...")
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key
