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
    safe_ev_budget_a = models.DecimalField(
        max_digits=7, decimal_places=1, default=Decimal("0"),
        help_text="Supply only: per phase, what the EVs may draw while the site meter (or the platform) is silent.",
    )
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


class SiteMeterReading(models.Model):
    """One reading of the site meter: the whole building's load at the supply, EVs included.

    Kept SITE_METER_RAW_RETENTION_DAYS; the 15-minute peaks and means (SiteMeterQuarter) stay for years.
    A replayed reading (same meter and timestamp) is stored once.
    """

    meter = models.ForeignKey(SiteMeter, on_delete=models.PROTECT, related_name="readings")
    sampled_at = models.DateTimeField()
    received_at = models.DateTimeField()
    current_l1_a = models.DecimalField(max_digits=8, decimal_places=1)
    current_l2_a = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    current_l3_a = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    # As the meter sent them, when it sent power rather than current (the currents are then derived).
    power_l1_w = models.IntegerField(null=True, blank=True)
    power_l2_w = models.IntegerField(null=True, blank=True)
    power_l3_w = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["meter", "sampled_at"]
        constraints = [models.UniqueConstraint(fields=["meter", "sampled_at"], name="site_reading_once")]
        indexes = [models.Index(fields=["sampled_at"], name="site_reading_time")]

    def __str__(self) -> str:
        return f"{self.meter_id} @ {self.sampled_at.isoformat()}"


class SiteMeterQuarter(models.Model):
    """Peak and mean current per phase of one meter over 15 minutes, for the capacity report.

    Rolled up from the raw readings (apps.electrical.services.site_readings_roll_up); a quarter is
    recomputed while its raw readings are kept, so a late reading still counts.
    """

    meter = models.ForeignKey(SiteMeter, on_delete=models.PROTECT, related_name="quarters")
    period_start = models.DateTimeField()
    samples = models.PositiveIntegerField()
    peak_l1_a = models.DecimalField(max_digits=8, decimal_places=1)
    peak_l2_a = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    peak_l3_a = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    mean_l1_a = models.DecimalField(max_digits=8, decimal_places=1)
    mean_l2_a = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)
    mean_l3_a = models.DecimalField(max_digits=8, decimal_places=1, null=True, blank=True)

    class Meta:
        ordering = ["meter", "period_start"]
        constraints = [models.UniqueConstraint(fields=["meter", "period_start"], name="site_quarter_once")]

    def __str__(self) -> str:
        return f"{self.meter_id} quarter {self.period_start.isoformat()}"


class SiteMeterRefusal(models.Model):
    """How many readings (or pushes) of a meter were refused, per reason, for the managers."""

    class Reason(models.TextChoices):
        FUTURE = "future", "Timestamp in the future"
        TOO_OLD = "too_old", "Timestamp older than the readings are kept"
        IMPLAUSIBLE = "implausible", "Implausible value"
        BAD_BODY = "bad_body", "Malformed body"
        BAD_TOKEN = "bad_token", "Wrong or missing token"

    meter = models.ForeignKey(SiteMeter, on_delete=models.PROTECT, related_name="refusals")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    count = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    last_detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["meter", "reason"]
        constraints = [models.UniqueConstraint(fields=["meter", "reason"], name="site_refusal_per_reason")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.reason}: {self.count}"
