"""Statements and money: what a statement adds to the resident's account, what a payment pays.

- A finalized statement is posted to the resident's ledger (apps.payments: kind ``charge``, key
  ``statement:<id>``), a credit note as a credit; each once, whatever runs twice.
- A payment that succeeds pays the statement it names (``statement:<id>``), then the resident's other
  unpaid statements, oldest due first; what is left waits as credit for the next statement. A refund or a
  chargeback takes the money back from the statements it paid, newest first; a chargeback won gives it back.
- Autopay: after a month closes, each statement of a resident with a saved default card is charged once.

``payment_event`` is the listener registered with apps.payments (apps/statements/apps.py): it runs inside
the transaction that records the payment's fact, in the building's schema.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum

from apps.payments import services as payments
from apps.payments.events import PaymentEvent
from apps.payments.models import LedgerEntry, SavedPaymentMethod
from apps.statements.collections import statement_record_payment
from apps.statements.models import PaymentAllocation, Statement

log = logging.getLogger(__name__)

UNPAID = (Statement.Status.OPEN, Statement.Status.PAST_DUE)


def statement_post_to_ledger(statement: Statement) -> None:
    if statement.total == 0 or statement.status == Statement.Status.DRAFT:
        return
    kind = LedgerEntry.Kind.CHARGE if statement.kind == Statement.Kind.STATEMENT else LedgerEntry.Kind.CREDIT
    payments.ledger_post(
        resident_id=statement.resident_id, kind=kind, amount=statement.total, currency=statement.currency,
        entry_key=f"statement:{statement.pk}", reference=f"statement:{statement.pk}",
        reason=f"{statement.get_kind_display()} {statement.number}",
    )


def _statement_of(reference: str) -> int | None:
    prefix, _, number = reference.partition(":")
    return int(number) if prefix == "statement" and number.isdigit() else None


def payment_received(*, payment_id: int, resident_id: int, reference: str, amount: Decimal) -> Decimal:
    """Apply ``amount`` of a payment; returns what is left as credit."""
    left = amount
    named = _statement_of(reference)
    targets = list(Statement.objects.filter(resident_id=resident_id, kind=Statement.Kind.STATEMENT,
                                            status__in=UNPAID).order_by("due_on", "sequence"))
    targets.sort(key=lambda statement: statement.pk != named)  # the one it names first
    for statement in targets:
        if left <= 0:
            break
        take = min(left, statement.amount_due)
        if take <= 0:
            continue
        statement_record_payment(statement_id=statement.pk, amount=take)
        PaymentAllocation.objects.create(payment_id=payment_id, resident_id=resident_id, statement=statement,
                                         amount=take)
        left -= take
    if left > 0:
        PaymentAllocation.objects.create(payment_id=payment_id, resident_id=resident_id, statement=None,
                                         amount=left)
    return left


def payment_taken_back(*, payment_id: int, resident_id: int, amount: Decimal) -> None:
    """A refund or chargeback of ``amount`` of a payment: its unapplied credit first, then the statements it
    paid, the newest first (each reopens)."""
    net: dict[int | None, Decimal] = {}
    for allocation in PaymentAllocation.objects.select_for_update().filter(payment_id=payment_id):
        net[allocation.statement_id] = net.get(allocation.statement_id, Decimal(0)) + allocation.amount
    left = amount
    for statement_id in sorted(net, key=lambda pk: -1 if pk is None else -pk):
        take = min(left, net[statement_id])
        if take <= 0:
            continue
        PaymentAllocation.objects.create(payment_id=payment_id, resident_id=resident_id, statement_id=statement_id,
                                         amount=-take)
        if statement_id is not None:
            statement_record_payment(statement_id=statement_id, amount=-take)
        left -= take
    if left > 0:
        log.error("payment %s: %s taken back beyond what was applied to statements", payment_id, left)


def apply_credit(resident_id: int) -> None:
    """Unapplied credit of the resident pays their unpaid statements (after a month closes)."""
    credits = (PaymentAllocation.objects.filter(resident_id=resident_id, statement__isnull=True)
               .values("payment_id").annotate(total=Sum("amount")).filter(total__gt=0))
    for credit in credits:
        PaymentAllocation.objects.create(payment_id=credit["payment_id"], resident_id=resident_id,
                                         statement=None, amount=-credit["total"])
        payment_received(payment_id=credit["payment_id"], resident_id=resident_id, reference="",
                         amount=credit["total"])


def payment_event(event: PaymentEvent) -> None:
    if event.purpose not in ("statement", "balance") and _statement_of(event.reference) is None:
        return  # a visitor's payment or anything else that is not a resident's account
    # A failed refund is money the resident never got back: it pays again what the refund had reopened.
    if event.kind in ("succeeded", "refund_failed") or (event.kind == "dispute_closed" and event.detail == "won"):
        payment_received(payment_id=event.payment_id, resident_id=event.resident_id, reference=event.reference,
                         amount=event.amount)
    elif event.kind in ("refunded", "disputed"):
        payment_taken_back(payment_id=event.payment_id, resident_id=event.resident_id, amount=event.amount)


def autopay(statement_id: int) -> str:
    """Charge a statement to the resident's saved default card, once; what happened, in words."""
    statement = Statement.objects.select_related("resident").filter(pk=statement_id).first()
    if statement is None or statement.status not in UNPAID or statement.amount_due <= 0:
        return "nothing to pay"
    if not SavedPaymentMethod.objects.filter(resident=statement.resident, is_default=True,
                                             removed_at__isnull=True).exists():
        return "no saved card"
    payment = payments.payment_charge_saved(resident=statement.resident, amount=statement.amount_due,
                                            reference=f"statement:{statement.pk}", currency=statement.currency)
    return payment.status


def _ledger_post_of(statement: Statement) -> payments.LedgerPost | None:
    """What ``statement_post_to_ledger`` posts for a statement (None: nothing)."""
    if statement.total == 0 or statement.status == Statement.Status.DRAFT:
        return None
    kind = LedgerEntry.Kind.CHARGE if statement.kind == Statement.Kind.STATEMENT else LedgerEntry.Kind.CREDIT
    return payments.LedgerPost(
        resident_id=statement.resident_id, kind=kind, amount=statement.total, currency=statement.currency,
        entry_key=f"statement:{statement.pk}", reference=f"statement:{statement.pk}",
        reason=f"{statement.get_kind_display()} {statement.number}",
    )


def statements_after_close(period_id: int) -> list[int]:
    """Post the month's statements to the ledger and apply waiting credit; the ids to offer to autopay.

    The same as ``statement_post_to_ledger`` then ``apply_credit`` for each statement in turn, in a few
    queries for the whole month: the entries are posted together, and credit is applied only for the
    residents who have some waiting (for the others apply_credit finds nothing and does nothing).
    """
    with transaction.atomic():
        statements = list(Statement.objects.filter(period_id=period_id).order_by("pk"))
        payments.ledger_post_many([post for statement in statements
                                   if (post := _ledger_post_of(statement)) is not None])
        residents = {statement.resident_id for statement in statements}
        waiting = set(
            PaymentAllocation.objects.filter(resident_id__in=residents, statement__isnull=True)
            .values("resident_id", "payment_id").annotate(total=Sum("amount")).filter(total__gt=0)
            .values_list("resident_id", flat=True)
        )
        seen: set[int] = set()
        for statement in statements:
            if statement.resident_id in waiting and statement.resident_id not in seen:
                seen.add(statement.resident_id)
                apply_credit(statement.resident_id)
        return [statement.pk for statement in statements]
