from django import template
from django.utils import translation

from apps.statements.money import display

register = template.Library()


@register.filter
def money(amount, currency: str) -> str:
    return display(amount, currency, translation.get_language() or "en")


@register.filter
def kwh(energy_wh) -> str:
    if energy_wh is None:
        return ""
    whole, rest = divmod(int(energy_wh), 1000)
    return f"{whole:,}.{rest:03d}"


@register.filter
def hours_minutes(seconds) -> str:
    if seconds is None:
        return ""
    minutes = int(seconds) // 60
    return f"{minutes // 60}:{minutes % 60:02d}"
