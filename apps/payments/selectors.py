"""Reads of payments and the ledger (inside the condominium's schema)."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet, Sum

from apps.payments.models import LedgerEntry, Payment


def resident_balance(*, resident_id: int) -> Decimal:
    """What the resident owes (> 0) or has in credit (< 0): the sum of their ledger, never stored."""
    return LedgerEntry.objects.filter(resident_id=resident_id).aggregate(total=Sum("amount"))["total"] or Decimal(0)


def resident_ledger(*, resident_id: int) -> QuerySet[LedgerEntry]:
    return LedgerEntry.objects.filter(resident_id=resident_id).select_related("created_by").order_by("created_at", "pk")


def resident_payments(*, resident_id: int) -> QuerySet[Payment]:
    return Payment.objects.filter(resident_id=resident_id).order_by("-created_at")


def payments_for(*, reference: str) -> QuerySet[Payment]:
    """Every payment made for one thing (``statement:42``), newest first: what statements read."""
    return Payment.objects.filter(reference=reference).order_by("-created_at")
