"""The public schema's view of the world: companies, their condominiums (the tenants),
the host names that lead to them, and the platform-wide charger registry."""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Lower
from django_tenants.models import DomainMixin, TenantMixin


class Company(models.Model):
    """A property management company. Its managers run every condominium it manages."""

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "companies"

    def __str__(self) -> str:
        return self.name


class Condominium(TenantMixin):
    """One building (or estate) with its own PostgreSQL schema."""

    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="condominiums")
    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    currency = models.CharField(max_length=3, default="USD")
    locale = models.CharField(max_length=8, default="en")
    billing_contact_name = models.CharField(max_length=200, blank=True)
    billing_contact_email = models.EmailField(blank=True)
    billing_address = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    auto_create_schema = True
    auto_drop_schema = False

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "condominiums"

    def __str__(self) -> str:
        return self.name


class Domain(DomainMixin):
    pass


class ChargerRegistration(models.Model):
    """Maps an OCPP chargePointId to its condominium, platform-wide.

    Installers configure one URL template (ws://host/ocpp/<id>) for every
    building; the websocket handshake finds the building here, and checks the
    charger's Basic-auth password against ``password_hash`` before any tenant
    data is touched. The charger itself lives in the condominium's schema.
    """

    charge_point_id = models.CharField(max_length=64, unique=True)
    condominium = models.ForeignKey(Condominium, on_delete=models.CASCADE, related_name="charger_registrations")
    password_hash = models.CharField(max_length=256)
    # Only a hash is kept: a password is known to be short when it is set, or when the charger next connects.
    password_weak = models.BooleanField(null=True, blank=True, help_text="Shorter than 16 characters; None: not known.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge_point_id"]
        constraints = [
            models.UniqueConstraint(Lower("charge_point_id"), name="charger_registration_id_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.charge_point_id


class ConnectionAttempt(models.Model):
    """A refused OCPP handshake: unknown charger, wrong password, removed charger...

    Kept in the public schema because an unknown chargePointId belongs to no
    building. Rate-limited: one row per (id, address, reason) and window; repeats
    within the window only bump ``attempts`` and ``last_at``.
    """

    charge_point_id = models.CharField(max_length=64)
    remote_address = models.CharField(max_length=64, blank=True)
    reason = models.CharField(max_length=32)
    condominium = models.ForeignKey(
        Condominium, null=True, blank=True, on_delete=models.SET_NULL, related_name="connection_attempts"
    )
    attempts = models.PositiveIntegerField(default=1)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_at"]
        indexes = [models.Index(fields=["charge_point_id", "remote_address", "reason", "-last_at"])]

    def __str__(self) -> str:
        return f"{self.charge_point_id} from {self.remote_address}: {self.reason}"
