"""What the reconciliation commands share: the building from --condominium, numbers read as Decimal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from django.core.management.base import CommandError

from apps.core.tenants import in_public_schema
from apps.tenancy.models import Condominium


def building(slug: str) -> Condominium:
    with in_public_schema():
        condo = Condominium.objects.filter(slug=slug).first()
    if condo is None:
        raise CommandError(f"--condominium: no building {slug!r} (see manage.py commission)")
    return condo


def decimal(option: str, text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        value = Decimal(text.replace(",", "").strip())
    except InvalidOperation:
        raise CommandError(f"{option}: {text!r} is not a number") from None
    if not value.is_finite():
        raise CommandError(f"{option}: {text!r} is not a number")
    return value


def day(option: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option}: {text!r} is not a date (YYYY-MM-DD)") from None
