from django import template
from django.utils import translation

from apps.statements.money import display, kwh_text

register = template.Library()


@register.filter
def money(amount, currency: str) -> str:
    return display(amount, currency, translation.get_language() or "en")


@register.filter
def kwh(energy_wh) -> str:
    """Integer Wh as kWh with three decimals, exact, written the reader's way ("1,234.500"; "1.234,500")."""
    if energy_wh is None:
        return ""
    return kwh_text(int(energy_wh), translation.get_language() or "en")


@register.filter
def hours_minutes(seconds) -> str:
    if seconds is None:
        return ""
    minutes = int(seconds) // 60
    return f"{minutes // 60}:{minutes % 60:02d}"
