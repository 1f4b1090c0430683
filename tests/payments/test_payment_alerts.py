"""A declined card payment opens an alert for the building's managers, about the unit, with the amount and Stripe's
reason; the unit's next successful payment resolves it (through localstripe, as a real payment)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.alerts.models import Alert
from apps.core.tenants import in_schema
from apps.payments import services
from apps.payments.models import Payment
from tests.payments.cards import DECLINES_ON_CHARGE, VISA, save_card

pytestmark = pytest.mark.usefixtures("stripe_settings")


def _alerts(schema: str) -> list[Alert]:
    with in_schema(schema):
        return list(Alert.objects.filter(kind=Alert.Kind.PAYMENT_FAILED, charge_point_id="unit 101").order_by("pk"))


def test_a_declined_payment_alerts_the_managers_until_the_unit_pays(payer, maple_schema, localstripe):
    before = {a.pk for a in _alerts(maple_schema)}
    with in_schema(maple_schema):
        save_card(localstripe, payer, DECLINES_ON_CHARGE)
        failed = services.payment_charge_saved(resident=payer, amount=Decimal("40.00"), reference="statement:81")
        failed.refresh_from_db()
        assert failed.status == Payment.Status.FAILED
    [alert] = [a for a in _alerts(maple_schema) if a.pk not in before or a.resolved_at is None]
    assert alert.resolved_at is None and alert.severity == Alert.Severity.WARNING
    assert alert.message == "unit 101: a payment of $40.00 for statement:81 failed: card_declined"
    assert alert.details["payment_id"] == failed.pk
    with in_schema(maple_schema):
        save_card(localstripe, payer, VISA)  # a new card, made the autopay one
        paid = services.payment_charge_saved(resident=payer, amount=Decimal("40.00"), reference="statement:81")
        paid.refresh_from_db()
        assert paid.status == Payment.Status.SUCCEEDED
    assert next(a for a in _alerts(maple_schema) if a.pk == alert.pk).resolved_at is not None
