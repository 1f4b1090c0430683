"""Tariffs, who pays which, and what each session cost (tenant schema).

A Tariff is a name (``code``); its prices are TariffVersions, immutable once published: a change of
price is a new version that takes effect at a date, and a session is priced with the version in force at
its start. Which tariff applies is chosen by TariffAssignment rows, the most specific first
(apps.billing.selectors.tariff_for explains the precedence). The pricing itself is the pure
apps/billing/pricing.py; SessionCharge keeps its result, one per charging session.
"""

from __future__ import annotations

from django.db import models


class BillingSettings(models.Model):
    """The building's billing choices (one row)."""

    prices_include_tax = models.BooleanField(
        default=False, help_text="Prices are shown and written tax included (the tax is inside them)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "billing settings"

    def __str__(self) -> str:
        return "prices include tax" if self.prices_include_tax else "prices before tax"


class Tariff(models.Model):
    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class TariffVersion(models.Model):
    """One set of prices of a tariff, in force from ``effective_from`` until the next version's.

    ``document`` is the tariff as written (apps.billing.pricing.parse_tariff reads it: elements and an
    optional monthly fee), numbers as strings. Once ``published_at`` is set nothing changes: the services
    refuse, and a database trigger (migration 0002) refuses any UPDATE or DELETE of a published row.
    """

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(help_text="1, 2, ... per tariff, in the order published.")
    effective_from = models.DateTimeField()
    currency = models.CharField(max_length=3)
    document = models.JSONField(help_text="Elements and monthly fee, as apps.billing.pricing.parse_tariff reads.")
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tariff__code", "effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "number"], name="tariff_version_number_unique"),
            models.UniqueConstraint(
                fields=["tariff", "effective_from"], condition=models.Q(published_at__isnull=False),
                name="tariff_version_one_per_moment",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.tariff.code} v{self.number}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


class TariffGroup(models.Model):
    """A named group of residents with a tariff of their own (e.g. staff, car-share members)."""

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.name


class TariffGroupMember(models.Model):
    """A resident belongs to at most one named group, so that the tariff that applies is never ambiguous."""

    group = models.ForeignKey(TariffGroup, on_delete=models.CASCADE, related_name="members")
    resident = models.OneToOneField("buildings.Resident", on_delete=models.CASCADE, related_name="tariff_group")

    def __str__(self) -> str:
        return f"{self.resident} in {self.group}"


class TariffAssignment(models.Model):
    """Who pays which tariff where. ``connector`` empty: anywhere in the building.

    audience: everyone, residents (sessions of a known resident), visitors (sessions without one), or a
    named group. Precedence: apps.billing.selectors.tariff_for.
    """

    class Audience(models.TextChoices):
        EVERYONE = "everyone", "Everyone"
        RESIDENTS = "residents", "Residents"
        VISITORS = "visitors", "Visitors"
        GROUP = "group", "A named group"

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="assignments")
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.EVERYONE)
    group = models.ForeignKey(TariffGroup, null=True, blank=True, on_delete=models.CASCADE, related_name="assignments")
    connector = models.ForeignKey(
        "charging.Connector", null=True, blank=True, on_delete=models.CASCADE, related_name="tariff_assignments"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(audience="group", group__isnull=False) | ~models.Q(audience="group")
                           & models.Q(group__isnull=True)),
                name="tariff_assignment_group_iff_audience_group",
            ),
            # One tariff per (audience, group, connector): NULLs compare equal here.
            models.UniqueConstraint(
                fields=["audience", "group", "connector"], name="tariff_assignment_unique", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        where = f" on {self.connector}" if self.connector_id else ""
        who = self.group.code if self.group_id else self.audience
        return f"{who}{where}: {self.tariff.code}"


class SessionCharge(models.Model):
    """What a charging session cost: one per session, written once (apps.billing.services.session_price).

    Held: not billed until a person looks at it (implausible energy, doubtful meter data, no tariff).
    ``period`` is the first day of the local month the session ended in: its statement's month.
    """

    class Status(models.TextChoices):
        PRICED = "priced", "Priced"
        HELD = "held", "Held for review"

    session = models.OneToOneField("charging.ChargingSession", on_delete=models.PROTECT, related_name="charge")
    tariff_version = models.ForeignKey(
        TariffVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="charges"
    )
    status = models.CharField(max_length=8, choices=Status.choices)
    hold_reason = models.TextField(blank=True)
    energy_wh = models.BigIntegerField()
    energy_source = models.CharField(max_length=32, blank=True)
    currency = models.CharField(max_length=3)
    lines = models.JSONField(default=list, help_text="apps.billing.pricing.lines_document: lines with explanations.")
    notes = models.JSONField(default=list, blank=True)
    subtotal = models.DecimalField(max_digits=14, decimal_places=3)
    tax = models.DecimalField(max_digits=14, decimal_places=3)
    total = models.DecimalField(max_digits=14, decimal_places=3)
    prices_include_tax = models.BooleanField(default=False)
    period = models.DateField(help_text="First day of the local month the session ended in.")
    priced_at = models.DateTimeField()

    class Meta:
        ordering = ["-priced_at"]
        indexes = [models.Index(fields=["period", "status"])]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.total} {self.currency} ({self.status})"
