"""Statements' background work: the month-end close of every building, then each statement's PDF and mail.

A task takes ids and the building's schema, and treats a missing row as done. The close runs hourly on
any worker: each building's month closes at the first run after its local midnight on the 1st, once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.utils import timezone

from apps.core.tenants import all_condominiums, in_condominium, in_schema
from apps.statements import periods, services
from apps.statements.closing import period_close
from apps.statements.models import BillingPeriod, Statement

log = logging.getLogger(__name__)


def close_due_months(now: datetime | None = None) -> dict[str, int]:
    """Close, in every building, the last month that has ended there (from the building's first month on)."""
    now = now or timezone.now()
    made: dict[str, int] = {}
    for condo in all_condominiums():
        month = periods.last_closable_month(now, condo.timezone)
        if month < periods.month_of(condo.created_at, condo.timezone):
            continue
        with in_condominium(condo):
            if BillingPeriod.objects.filter(month=month, status=BillingPeriod.Status.CLOSED).exists():
                continue
            try:
                result = period_close(month=month, now=now)
            except Exception:
                # One building's trouble must not keep the others' statements back; the next run retries.
                log.exception("closing %s %s failed", condo.slug, month)
                continue
            made[condo.slug] = result.statements
    return made


@shared_task(name="apps.statements.tasks.close_due_periods")
def close_due_periods() -> dict[str, int]:
    return close_due_months()


@shared_task(name="apps.statements.tasks.deliver_statement", bind=True, max_retries=5, default_retry_delay=120)
def deliver_statement(self, schema_name: str, statement_id: int) -> bool:
    """Render the statement's PDF (once) and mail it to the resident (once)."""
    with in_schema(schema_name):
        if not Statement.objects.filter(pk=statement_id).exclude(status=Statement.Status.DRAFT).exists():
            return False
        try:
            return services.statement_email(statement_id=statement_id)
        except OSError as error:  # the mail server is down: try again later
            raise self.retry(exc=error) from error


def queue_deliveries(schema_name: str, period_id: int) -> int:
    with in_schema(schema_name):
        ids = list(Statement.objects.filter(period_id=period_id, emailed_at__isnull=True)
                   .exclude(status=Statement.Status.DRAFT).values_list("pk", flat=True))
    for statement_id in ids:
        deliver_statement.delay(schema_name, statement_id)
    return len(ids)


@shared_task(name="apps.statements.tasks.follow_up_unpaid")
def follow_up_unpaid() -> dict[str, int]:
    """Every building's follow-up of unpaid statements, for its own local date (hourly; idempotent)."""
    from apps.statements.collections import statements_follow_up

    now = timezone.now()
    reminded: dict[str, int] = {}
    for condo in all_condominiums():
        with in_condominium(condo):
            try:
                result = statements_follow_up(today=periods.local_day(now, condo.timezone), now=now)
            except Exception:
                log.exception("following up the unpaid statements of %s failed", condo.slug)
                continue
            reminded[condo.slug] = result.reminders
    return reminded


@shared_task(name="apps.statements.tasks.autopay_statement", bind=True, max_retries=3, default_retry_delay=600)
def autopay_statement(self, schema_name: str, statement_id: int) -> str:
    """Charge a statement to the resident's saved card (once per statement; a decline is recorded and the
    resident pays by hand or is reminded)."""
    from apps.payments.services import PaymentUnavailable
    from apps.statements.settlement import autopay

    with in_schema(schema_name):
        try:
            return autopay(statement_id)
        except PaymentUnavailable as error:  # Stripe cannot be reached: later, with the same key
            raise self.retry(exc=error) from error


def queue_autopay(schema_name: str, period_id: int) -> int:
    from apps.payments.models import SavedPaymentMethod

    with in_schema(schema_name):
        payers = set(SavedPaymentMethod.objects.filter(is_default=True, removed_at__isnull=True)
                     .values_list("resident_id", flat=True))
        ids = list(Statement.objects.filter(period_id=period_id, resident_id__in=payers,
                                            status__in=[Statement.Status.OPEN, Statement.Status.PAST_DUE])
                   .values_list("pk", flat=True))
    for statement_id in ids:
        autopay_statement.delay(schema_name, statement_id)
    return len(ids)
