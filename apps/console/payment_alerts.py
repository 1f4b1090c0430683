"""A failed card payment becomes an alert for the building's managers, one per unit ("unit 101"), in the inbox and
by e-mail like any other; the unit's next successful payment resolves it. Registered in apps.py as a listener of
apps.payments.events, so it is written in the same transaction (and schema) as the payment's record."""

from __future__ import annotations

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise, alert_resolve
from apps.buildings.models import Resident
from apps.payments.events import PaymentEvent
from apps.statements.money import display


def _subject(resident_id: int) -> str:
    unit = Resident.objects.filter(pk=resident_id).values_list("unit__number", flat=True).first()
    return f"unit {unit}" if unit else f"resident {resident_id}"


def payment_alert(event: PaymentEvent) -> None:
    if event.kind == "failed":
        subject = _subject(event.resident_id)
        why = f": {event.detail}" if event.detail else ""
        alert_raise(kind=Alert.Kind.PAYMENT_FAILED, charge_point_id=subject,
                    message=f"{subject}: a payment of {display(event.amount, event.currency)} for "
                            f"{event.reference or event.purpose} failed{why}"[:300],
                    details={"payment_id": event.payment_id, "reference": event.reference, "detail": event.detail})
    elif event.kind == "succeeded":
        alert_resolve(kind=Alert.Kind.PAYMENT_FAILED, charge_point_id=_subject(event.resident_id))
