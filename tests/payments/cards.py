"""Cards saved and payments made through localstripe, as a resident's browser and the platform do: shared by the
tests of payments, statements and the audit export."""

from __future__ import annotations

import uuid
from decimal import Decimal

from apps.payments import services
from apps.payments.models import Payment, SavedPaymentMethod

VISA = "4242424242424242"
DECLINES_ON_CHARGE = "4000000000000341"  # attaches fine, every charge is declined


def save_card(localstripe, resident, number: str) -> SavedPaymentMethod:
    setup = services.payment_method_setup(resident=resident)
    status, body = localstripe.confirm_setup(setup.setup_intent_id, number)  # the resident's browser
    assert status == 200 and body["status"] == "succeeded", body
    return services.payment_method_save(resident=resident, setup_intent_id=setup.setup_intent_id)


def paid(localstripe, payer, schema, amount="100.00", reference=None) -> Payment:
    save_card(localstripe, payer, VISA)
    payment = services.payment_charge_saved(resident=payer, amount=Decimal(amount),
                                            reference=reference or f"statement:{uuid.uuid4().hex[:8]}")
    assert payment.status == Payment.Status.SUCCEEDED
    return payment
