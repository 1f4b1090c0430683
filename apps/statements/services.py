"""Statements: drafts, finalization with gapless numbers, credit notes, the PDF and the e-mail.

Call inside the building's schema. A finalized statement never changes: its lines, totals and parties
are frozen, and its PDF is rendered once. What was wrong on it is corrected by a credit note, which is
finalized at once with a number of its own series.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from apps.buildings.models import Resident
from apps.core.tenants import building_zone, current_condominium
from apps.statements.models import BillingPeriod, NumberSeries, Statement, StatementDocument, StatementLine
from apps.statements.money import minor_unit
from apps.tenancy.models import Condominium

log = logging.getLogger(__name__)

PREFIX = {Statement.Kind.STATEMENT: "S", Statement.Kind.CREDIT_NOTE: "CN"}


class StatementRefused(Exception):
    """The change is not allowed; the message says which statement and why."""


@dataclass(frozen=True)
class LineInput:
    kind: str
    description: str
    amount: Decimal
    tax: Decimal = Decimal("0")
    tax_rate: Decimal = Decimal("0")
    quantity: Decimal = Decimal("1")
    unit: str = ""
    unit_price: Decimal = Decimal("0")
    session_id: int | None = None
    prior_period: bool = False
    occurred_at: datetime | None = None
    connector_label: str = ""
    energy_wh: int | None = None
    duration_s: int | None = None
    window: str = ""
    extra: dict = field(default_factory=dict)


def _resident_language(resident: Resident, condominium: Condominium) -> str:
    wanted = (resident.user.preferred_language or condominium.locale or "en")[:2]
    return wanted if wanted in dict(settings.LANGUAGES) else "en"


def statement_draft_create(
    *, resident: Resident, currency: str, lines: list[LineInput], period: BillingPeriod | None = None,
    kind: str = Statement.Kind.STATEMENT, corrects: Statement | None = None, reason: str = "", by=None,
    condominium: Condominium | None = None,
) -> Statement:
    """A draft with its lines and totals (the sum of the lines, each already rounded)."""
    condominium = condominium or current_condominium()
    statement = Statement.objects.create(
        kind=kind, resident=resident, period=period, corrects=corrects, currency=currency,
        language=_resident_language(resident, condominium), reason=reason, created_by=by,
        subtotal=sum((line.amount for line in lines), Decimal("0")),
        tax=sum((line.tax for line in lines), Decimal("0")),
    )
    statement.total = statement.subtotal + statement.tax
    statement.save(update_fields=["total"])
    StatementLine.objects.bulk_create(
        StatementLine(
            statement=statement, position=position, kind=line.kind, description=line.description[:300],
            session_id=line.session_id, prior_period=line.prior_period, occurred_at=line.occurred_at,
            connector_label=line.connector_label, energy_wh=line.energy_wh, duration_s=line.duration_s,
            window=line.window[:120], quantity=line.quantity, unit=line.unit, unit_price=line.unit_price,
            amount=line.amount, tax_rate=line.tax_rate, tax=line.tax,
        )
        for position, line in enumerate(lines, start=1)
    )
    return statement


def _take_number(kind: str) -> tuple[int, str]:
    """The next number of the series, inside the caller's transaction (the series row stays locked until
    it commits, so numbers are handed out one at a time and a rollback gives the number back)."""
    NumberSeries.objects.get_or_create(kind=kind)
    series = NumberSeries.objects.select_for_update().get(kind=kind)
    series.last_number += 1
    series.save(update_fields=["last_number"])
    return series.last_number, f"{PREFIX[kind]}-{series.last_number:06d}"


def _parties(statement: Statement, condominium: Condominium) -> dict:
    resident = statement.resident
    return {
        "building": {
            "name": condominium.name, "address": condominium.billing_address,
            "contact_name": condominium.billing_contact_name, "contact_email": condominium.billing_contact_email,
            "timezone": condominium.timezone,
        },
        "company": {"name": condominium.company.name},
        "resident": {"name": resident.user.name, "email": resident.user.email, "unit": resident.unit.number},
    }


def statement_finalize(*, statement_id: int, now: datetime | None = None,
                       condominium: Condominium | None = None) -> Statement:
    """Give a draft its number and freeze it. Finalizing a finalized statement changes nothing."""
    now = now or timezone.now()
    condominium = condominium or current_condominium()
    with transaction.atomic():
        statement = (Statement.objects.select_for_update(of=("self",))
                     .select_related("resident__user", "resident__unit").get(pk=statement_id))
        if statement.status != Statement.Status.DRAFT:
            return statement
        statement.sequence, statement.number = _take_number(statement.kind)
        statement.parties = _parties(statement, condominium)
        statement.finalized_at = now
        statement.issued_on = timezone.localdate(now, building_zone(condominium))
        if statement.kind == Statement.Kind.CREDIT_NOTE:
            statement.status = Statement.Status.ISSUED
        elif statement.total <= 0:
            statement.status = Statement.Status.PAID  # nothing to pay
            statement.paid_at = now
        else:
            statement.status = Statement.Status.OPEN
            statement.due_on = statement.issued_on + timedelta(days=settings.STATEMENT_PAYMENT_TERMS_DAYS)
        statement.save()
        from apps.statements import settlement

        settlement.statement_post_to_ledger(statement)
    return statement


def credit_note_create(*, statement_id: int, reason: str, by=None, amount: Decimal | None = None,
                       now: datetime | None = None) -> Statement:
    """A finalized credit note against a finalized statement: all of it, or ``amount`` (tax included,
    split over the statement's tax rate in proportion). Never more than what is left uncredited."""
    if not reason.strip():
        raise StatementRefused("a credit note needs a reason")
    condominium = current_condominium()
    with transaction.atomic():
        original = Statement.objects.select_for_update(of=("self",)).select_related("resident").get(pk=statement_id)
        if original.kind != Statement.Kind.STATEMENT or original.status == Statement.Status.DRAFT:
            raise StatementRefused(f"statement {original}: only a finalized statement can be credited")
        credited = -sum((note.total for note in original.credit_notes.all()), Decimal("0"))
        left = original.total - credited
        wanted = left if amount is None else amount
        if wanted <= 0 or wanted > left:
            raise StatementRefused(
                f"statement {original.number}: a credit of {wanted} {original.currency} is more than the "
                f"{left} {original.currency} left to credit" if wanted > 0 else
                f"statement {original.number}: the credit must be more than zero"
            )
        tax = Decimal("0")
        if original.total:
            tax = (wanted * original.tax / original.total).quantize(minor_unit(original.currency), ROUND_HALF_UP)
        line = LineInput(kind=StatementLine.Kind.CREDIT, description=f"Credit for {original.number}: {reason}"[:300],
                         amount=-(wanted - tax), tax=-tax)
        note = statement_draft_create(
            resident=original.resident, currency=original.currency, lines=[line], kind=Statement.Kind.CREDIT_NOTE,
            corrects=original, reason=reason, by=by, condominium=condominium,
        )
        note = statement_finalize(statement_id=note.pk, now=now, condominium=condominium)
        if original.status in (Statement.Status.OPEN, Statement.Status.PAST_DUE):
            # The credit lowers what is still due; on a paid statement it is the resident's credit on their
            # account (the ledger), for a refund or the next statement.
            original.amount_credited += min(wanted, original.amount_due)
            if original.amount_due == 0:
                nothing_paid = original.amount_paid == 0
                original.status = Statement.Status.VOID if nothing_paid else Statement.Status.PAID
                if nothing_paid:
                    original.voided_at = now or timezone.now()
                else:
                    original.paid_at = now or timezone.now()
            original.save(update_fields=["amount_credited", "status", "voided_at", "paid_at", "updated_at"])
    return note


def statement_render(*, statement_id: int, now: datetime | None = None) -> StatementDocument:
    """Render the PDF of a finalized statement once; later calls return the stored one unchanged."""
    from apps.statements import documents

    existing = StatementDocument.objects.filter(statement_id=statement_id).first()
    if existing:
        return existing
    statement = Statement.objects.select_related("resident__user", "corrects", "period").get(pk=statement_id)
    if statement.status == Statement.Status.DRAFT:
        raise StatementRefused(f"statement {statement.pk} is a draft: only finalized statements are rendered")
    pdf = documents.render_pdf(statement)
    with transaction.atomic():
        document, _ = StatementDocument.objects.get_or_create(
            statement=statement,
            defaults={"pdf": pdf, "sha256": hashlib.sha256(pdf).hexdigest(), "size_bytes": len(pdf),
                      "language": statement.language, "rendered_at": now or timezone.now()},
        )
    return document


def statement_email(*, statement_id: int, now: datetime | None = None) -> bool:
    """Mail the resident their statement with the PDF attached, once. False when it had been sent."""
    now = now or timezone.now()
    document = statement_render(statement_id=statement_id, now=now)
    claimed = Statement.objects.filter(pk=statement_id, emailed_at__isnull=True).update(emailed_at=now)
    if not claimed:
        return False
    statement = Statement.objects.select_related("resident__user").get(pk=statement_id)
    try:
        with translation.override(statement.language):
            context = {"statement": statement, "parties": statement.parties}
            subject = " ".join(render_to_string("statements/email_subject.txt", context).split())
            body = render_to_string("statements/email_body.txt", context)
        message = EmailMessage(subject, body, to=[statement.resident.user.email],
                               headers={"Content-Language": statement.language})
        message.attach(f"{statement.number}.pdf", bytes(document.pdf), "application/pdf")
        message.send()
    except Exception:
        # Give the claim back, so that the next attempt sends it.
        Statement.objects.filter(pk=statement_id, emailed_at=now).update(emailed_at=None)
        raise
    return True


def due_date_passed(statement: Statement, today: date) -> bool:
    return bool(statement.due_on and statement.due_on < today)
