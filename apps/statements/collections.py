"""After the due date: reminders, then the resident's cards blocked; and unblocked once paid.

Run daily per building (``statements_follow_up``). A statement not paid by its due date becomes past
due and its resident gets a reminder the next day, then every STATEMENT_REMINDER_EVERY_DAYS days.
STATEMENT_BLOCK_AFTER_DAYS after the due date the account is marked overdue, which blocks every card of
the resident (Authorize, StartTransaction and the chargers' local lists answer Blocked). Paying the
last past-due statement gives the cards back at once. A manager's suspension is never lifted here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from apps.buildings import services as buildings
from apps.buildings.models import AccountStanding, Resident
from apps.statements.models import Statement

log = logging.getLogger(__name__)

UNPAID = (Statement.Status.OPEN, Statement.Status.PAST_DUE)


@dataclass(frozen=True)
class FollowUp:
    became_past_due: int
    reminders: int
    blocked: list[int]  # resident ids


def statements_follow_up(*, today: date, now: datetime | None = None) -> FollowUp:
    """The day's follow-up of unpaid statements in the current building (safe to run more than once a day)."""
    now = now or timezone.now()
    became = Statement.objects.filter(
        kind=Statement.Kind.STATEMENT, status=Statement.Status.OPEN, due_on__lt=today
    ).update(status=Statement.Status.PAST_DUE, updated_at=now)
    reminders = 0
    every = timedelta(days=settings.STATEMENT_REMINDER_EVERY_DAYS)
    for statement in Statement.objects.filter(status=Statement.Status.PAST_DUE).select_related("resident__user"):
        if statement.last_reminder_at and statement.last_reminder_at > now - every + timedelta(hours=1):
            continue
        # Claim the reminder first, so two runs at once send it once.
        claimed = Statement.objects.filter(
            pk=statement.pk, reminders_sent=statement.reminders_sent
        ).update(reminders_sent=statement.reminders_sent + 1, last_reminder_at=now)
        if claimed:
            statement.reminders_sent += 1
            _remind(statement, today)
            reminders += 1
    blocked = []
    limit = today - timedelta(days=settings.STATEMENT_BLOCK_AFTER_DAYS)
    overdue = (Statement.objects.filter(status=Statement.Status.PAST_DUE, due_on__lt=limit)
               .order_by("resident_id", "due_on").values_list("resident_id", "due_on", "number"))
    first_by_resident: dict[int, tuple[date, str]] = {}
    for resident_id, due_on, number in overdue:
        first_by_resident.setdefault(resident_id, (due_on, number))
    for resident_id, (due_on, number) in first_by_resident.items():
        standing = Resident.objects.filter(pk=resident_id).values_list("account_standing", flat=True).first()
        if standing == AccountStanding.GOOD:
            buildings.resident_mark_overdue(
                resident_id=resident_id, overdue_since=due_on, reason=f"statement {number} unpaid since {due_on}"
            )
            blocked.append(resident_id)
    return FollowUp(became, reminders, blocked)


def _remind(statement: Statement, today: date) -> None:
    try:
        with translation.override(statement.language):
            context = {"statement": statement, "parties": statement.parties, "today": today,
                       "block_after": settings.STATEMENT_BLOCK_AFTER_DAYS}
            subject = " ".join(render_to_string("statements/reminder_subject.txt", context).split())
            body = render_to_string("statements/reminder_body.txt", context)
        EmailMessage(subject, body, to=[statement.resident.user.email],
                     headers={"Content-Language": statement.language}).send()
    except OSError:
        # The mail server is down: the next run sends it (the claim is given back).
        Statement.objects.filter(pk=statement.pk).update(reminders_sent=statement.reminders_sent - 1,
                                                         last_reminder_at=statement.last_reminder_at)
        log.warning("reminder for statement %s not sent: the mail server is unreachable", statement.number)


def statement_record_payment(*, statement_id: int, amount: Decimal, now: datetime | None = None) -> Statement:
    """Money received against a statement (positive) or given back (negative: a refund or a lost dispute).

    Paid in full -> paid, and when it was the resident's last past-due statement, the cards work again.
    Money given back reopens it (past due if its due date has passed)."""
    now = now or timezone.now()
    with transaction.atomic():
        statement = Statement.objects.select_for_update().get(pk=statement_id)
        statement.amount_paid += amount
        if statement.status in UNPAID and statement.amount_due == 0:
            statement.status = Statement.Status.PAID
            statement.paid_at = now
        elif statement.status == Statement.Status.PAID and statement.amount_due > 0:
            past_due = statement.due_on is not None and statement.due_on < timezone.localdate(now)
            statement.status = Statement.Status.PAST_DUE if past_due else Statement.Status.OPEN
            statement.paid_at = None
        statement.save(update_fields=["amount_paid", "status", "paid_at", "updated_at"])
        _restore_if_settled(statement.resident_id)
    return statement


def _restore_if_settled(resident_id: int) -> None:
    resident = Resident.objects.get(pk=resident_id)
    if resident.account_standing != AccountStanding.OVERDUE:
        return  # good already, or suspended by a manager: not ours to lift
    if not Statement.objects.filter(resident_id=resident_id, status=Statement.Status.PAST_DUE).exists():
        buildings.resident_restore_standing(resident_id=resident_id, reason="past-due statements paid")
