"""Tariffs (tenant schema).

A placeholder until the billing engine arrives: a named tariff that
connectors can point at. Versioned, immutable tariff elements come with the
pricing engine (apps/billing/pricing.py).
"""

from __future__ import annotations

from django.db import models


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
