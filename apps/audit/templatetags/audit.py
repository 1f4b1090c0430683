from decimal import Decimal

from django import template

from apps.audit import formats

register = template.Library()


@register.filter
def plain(amount, currency: str) -> str:
    """An amount as the CSV files write it (``3.95``), so the report and the files read the same."""
    return formats.plain(Decimal(amount), currency) if amount is not None else ""
