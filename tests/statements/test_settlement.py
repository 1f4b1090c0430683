"""Statements paid through Stripe (localstripe), and the resident's ledger.

The rule: a finalized statement is on the resident's ledger once; a payment pays the statement it names,
then the oldest unpaid ones, and what is left waits as credit for the next statement; autopay charges a
statement once; a refund or chargeback reopens what it paid, newest first; a decline leaves it unpaid.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from apps.buildings.models import Resident
from apps.core.tenants import in_schema
from apps.payments import selectors as ledger
from apps.payments import services as payments
from apps.payments.models import LedgerEntry
from apps.statements import services, settlement
from apps.statements.models import PaymentAllocation, Statement, StatementLine
from apps.statements.services import LineInput
from tests import factories
from tests.payments.cards import DECLINES_ON_CHARGE, VISA, save_card

pytestmark = pytest.mark.usefixtures("stripe_settings")


@pytest.fixture
def payer(world, committed) -> Resident:
    user = factories.resident(world.maple, f"s-{uuid.uuid4().hex[:10]}@maple.test", "101")
    with in_schema(world.maple.schema_name):
        return Resident.objects.select_related("user").get(user=user)


def _final(resident: Resident, total: str) -> Statement:
    draft = services.statement_draft_create(resident=resident, currency="USD", lines=[
        LineInput(kind=StatementLine.Kind.SESSION, description="Session", amount=Decimal(total))])
    return services.statement_finalize(statement_id=draft.pk)


def _balance(resident: Resident) -> Decimal:
    return ledger.resident_balance(resident_id=resident.pk)




def test_autopay_pays_a_statement_once_and_the_ledger_comes_to_zero(payer, maple_schema, localstripe):
    with in_schema(maple_schema):
        save_card(localstripe, payer, VISA)
        statement = _final(payer, "19.75")
        assert list(LedgerEntry.objects.filter(resident=payer).values_list("kind", "amount")) == [
            ("charge", Decimal("19.75"))]
        services.statement_finalize(statement_id=statement.pk)  # again: nothing more on the ledger
        assert _balance(payer) == Decimal("19.75")
        assert settlement.autopay(statement.pk) == "succeeded"
        statement.refresh_from_db()
        assert statement.status == Statement.Status.PAID and statement.amount_paid == Decimal("19.75")
        assert settlement.autopay(statement.pk) == "nothing to pay"
        assert _balance(payer) == 0
        from apps.payments.models import Payment

        [payment] = Payment.objects.filter(resident=payer)
        assert len(localstripe.payment_intents_of(maple_schema, payment.pk)) == 1


def test_a_refund_reopens_the_statement_it_paid_and_a_decline_leaves_it_unpaid(payer, maple_schema, localstripe,
                                                                               world):
    with in_schema(maple_schema):
        save_card(localstripe, payer, VISA)
        statement = _final(payer, "50.00")
        settlement.autopay(statement.pk)
        from apps.payments.models import Payment

        payment = Payment.objects.get(resident=payer, reference=f"statement:{statement.pk}")
        refund = payments.refund_create(payment=payment, amount=Decimal("20.00"), by=world.acme_manager,
                                        reason="charged for a session the charger never delivered")
        payments.refund_submit(refund_id=refund.pk)
        statement.refresh_from_db()
        assert statement.status == Statement.Status.OPEN and statement.amount_due == Decimal("20.00")

    other = factories.resident(world.maple, f"x-{uuid.uuid4().hex[:10]}@maple.test", "101")
    with in_schema(maple_schema):
        declined = Resident.objects.get(user=other)
        save_card(localstripe, declined, DECLINES_ON_CHARGE)
        unpaid = _final(declined, "12.00")
        assert settlement.autopay(unpaid.pk) == "failed"
        unpaid.refresh_from_db()
        assert unpaid.status == Statement.Status.OPEN and unpaid.amount_paid == 0


def test_a_refund_that_fails_later_pays_the_statement_again(payer, maple_schema, localstripe, world):
    """Stripe can fail a refund days after it succeeded (the card account was closed): the money never left,
    so the statement the refund reopened is paid again and the ledger comes back to what it was."""
    from apps.payments.models import Payment
    from apps.payments.stripe_client import get_client

    with in_schema(maple_schema):
        save_card(localstripe, payer, VISA)
        statement = _final(payer, "40.00")
        settlement.autopay(statement.pk)
        payment = Payment.objects.get(resident=payer, reference=f"statement:{statement.pk}")
        refund = payments.refund_submit(refund_id=payments.refund_create(
            payment=payment, amount=Decimal("15.00"), by=world.acme_manager, reason="overcharged idle fee").pk)
        statement.refresh_from_db()
        assert (statement.status, statement.amount_due) == (Statement.Status.OPEN, Decimal("15.00"))
        assert _balance(payer) == Decimal("15.00")

        localstripe.fail_refund(refund.refund_id)
        [failed] = [r for r in get_client().refunds_of(payment.payment_intent_id) if r.id == refund.refund_id]
        assert failed.status == "failed"
        for _ in range(2):  # Stripe's event, then its redelivery: once
            payments.refund_apply(payment_id=payment.pk, result=failed)
        statement.refresh_from_db()
        payment.refresh_from_db()
        assert (statement.status, statement.amount_due) == (Statement.Status.PAID, Decimal("0.00"))
        assert payment.amount_refunded == Decimal("0.00")
        assert _balance(payer) == 0
        assert list(LedgerEntry.objects.filter(resident=payer).order_by("pk").values_list("kind", "amount")) == [
            ("charge", Decimal("40.00")), ("payment", Decimal("-40.00")), ("refund", Decimal("15.00")),
            ("refund", Decimal("-15.00"))]


def test_paying_the_balance_pays_the_oldest_first_and_the_rest_waits_for_the_next_statement(
    payer, maple_schema, localstripe
):
    with in_schema(maple_schema):
        save_card(localstripe, payer, VISA)
        first, second = _final(payer, "10.00"), _final(payer, "15.00")
        payment = payments.payment_charge_saved(resident=payer, amount=Decimal("30.00"), reference="balance",
                                                purpose="balance")
        assert payment.status == "succeeded"
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.status == second.status == Statement.Status.PAID
        waiting = PaymentAllocation.objects.filter(payment_id=payment.pk, statement__isnull=True)
        assert sum(a.amount for a in waiting) == Decimal("5.00")
        assert _balance(payer) == Decimal("-5.00")  # the resident is 5.00 ahead
        third = _final(payer, "8.00")
        settlement.apply_credit(payer.pk)
        third.refresh_from_db()
        assert third.amount_paid == Decimal("5.00") and third.amount_due == Decimal("3.00")
        assert sum(a.amount for a in PaymentAllocation.objects.filter(payment_id=payment.pk,
                                                                      statement__isnull=True)) == 0
