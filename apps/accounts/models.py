"""People and their roles. One login per person; roles live in the public schema
so that the platform can tell, before entering any tenant, which buildings a
person may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("a user needs an e-mail address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=200, blank=True)
    preferred_language = models.CharField(max_length=8, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="Can use the platform's admin site.")
    date_joined = models.DateTimeField(default=timezone.now)
    # Set when an invitation to choose a password was last sent, so that running a
    # commissioning file again does not invite the same person again.
    invited_at = models.DateTimeField(null=True, blank=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.name or self.email


class CompanyMembership(models.Model):
    """Company staff. A manager sees and runs every condominium of the company."""

    class Role(models.TextChoices):
        MANAGER = "manager", "Manager"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="company_memberships")
    company = models.ForeignKey("tenancy.Company", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MANAGER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "company", "role"], name="company_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.company}"


class CondominiumMembership(models.Model):
    """A role in one condominium: board member or resident (a person may hold both)."""

    class Role(models.TextChoices):
        BOARD = "board", "Board member"
        RESIDENT = "resident", "Resident"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="condominium_memberships")
    condominium = models.ForeignKey("tenancy.Condominium", on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "condominium", "role"], name="condominium_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.condominium}"
