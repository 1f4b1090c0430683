"""Units, parking spots, residents and their identification tags (tenant schema)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Unit(models.Model):
    number = models.CharField(max_length=32, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return self.number


class ParkingSpot(models.Model):
    label = models.CharField(max_length=32, unique=True)
    unit = models.ForeignKey(Unit, null=True, blank=True, on_delete=models.SET_NULL, related_name="parking_spots")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["label"]

    def __str__(self) -> str:
        return self.label


class AccountStanding(models.TextChoices):
    GOOD = "good", "In good standing"
    OVERDUE = "overdue", "Overdue"
    SUSPENDED = "suspended", "Suspended by a manager"


class Resident(models.Model):
    """A person living in (or owning) a unit of this building.

    The login is the platform-wide user; access is granted by the matching
    CondominiumMembership (role resident) in the public schema.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    unit = models.ForeignKey(Unit, on_delete=models.PROTECT, related_name="residents")
    is_active = models.BooleanField(default=True)
    allow_concurrent_sessions = models.BooleanField(
        default=False, help_text="May charge at two connectors at once (otherwise ConcurrentTx)."
    )
    # Account standing: anything but GOOD blocks charging (Authorize, StartTransaction and the chargers'
    # local lists answer Blocked). Billing sets OVERDUE; a manager may SUSPEND. Changed only through
    # apps.buildings.services, which also brings the chargers' local lists up to date.
    account_standing = models.CharField(max_length=16, choices=AccountStanding.choices, default=AccountStanding.GOOD)
    overdue_since = models.DateField(null=True, blank=True, help_text="Due date of the oldest unpaid statement.")
    standing_reason = models.CharField(max_length=200, blank=True, help_text="Why charging is blocked.")
    standing_changed_at = models.DateTimeField(null=True, blank=True)
    standing_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Who changed the standing; empty when the platform did (billing).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["unit__number", "user__email"]
        constraints = [models.UniqueConstraint(fields=["user", "unit"], name="resident_user_unit_unique")]

    def __str__(self) -> str:
        return f"{self.user} ({self.unit})"

    @property
    def charging_blocked(self) -> bool:
        return self.account_standing != AccountStanding.GOOD


class IdTag(models.Model):
    """An RFID card or app token (OCPP idTag, up to 20 characters, case-insensitive).

    Stored upper-case so that lookups are exact. The parent tag groups a
    household: every tag of one unit shares it unless set otherwise.
    """

    class Kind(models.TextChoices):
        RFID = "rfid", "RFID card"
        APP = "app", "App / QR"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        BLOCKED = "blocked", "Blocked"
        LOST = "lost", "Reported lost"

    id_tag = models.CharField(max_length=20, unique=True)
    resident = models.ForeignKey(Resident, on_delete=models.PROTECT, related_name="id_tags")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.RFID)
    label = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=200, blank=True)
    parent_id_tag = models.CharField(max_length=20, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id_tag"]

    def __str__(self) -> str:
        return self.id_tag
