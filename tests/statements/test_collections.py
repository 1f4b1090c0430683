"""Unpaid statements: reminders, then the cards blocked, then unblocked when paid.

The rule: the day after the due date a statement is past due and the resident is reminded, once per
reminder interval however often the follow-up runs; STATEMENT_BLOCK_AFTER_DAYS after the due date every
card of the resident answers Blocked; paying the last past-due statement gives them back at once; a
manager's suspension is not lifted by a payment.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from apps.buildings import services as buildings
from apps.buildings.models import AccountStanding, Resident
from apps.charging.selectors import authorize_id_tag
from apps.core.tenants import in_schema
from apps.statements import services
from apps.statements.collections import statement_record_payment, statements_follow_up
from apps.statements.models import Statement, StatementLine
from apps.statements.services import LineInput
from tests import factories

ISSUED = datetime(2026, 12, 1, 12, tzinfo=UTC)  # due December 16th (15 days)


def _statement(condo, total: str = "19.90") -> tuple[Resident, Statement, str]:
    tag = f"T{uuid.uuid4().hex[:10].upper()}"
    user = factories.resident(condo, f"d-{uuid.uuid4().hex[:8]}@maple.test", "101", id_tags=(tag,))
    with in_schema(condo.schema_name):
        resident = Resident.objects.select_related("user").get(user=user)
        draft = services.statement_draft_create(resident=resident, currency="USD", lines=[
            LineInput(kind=StatementLine.Kind.SESSION, description="Session", amount=Decimal(total))])
        return resident, services.statement_finalize(statement_id=draft.pk, now=ISSUED), tag


def day(n: int) -> date:
    return date(2026, 12, 16) + timedelta(days=n)


@pytest.mark.django_db
def test_past_due_then_reminded_once_per_interval_then_blocked_then_unblocked_when_paid(world, smtp_inbox):
    resident, statement, tag = _statement(world.maple)
    email = resident.user.email
    with in_schema(world.maple.schema_name):
        assert statement.due_on == day(0)
        on_time = statements_follow_up(today=day(0), now=datetime(2026, 12, 16, 20, tzinfo=UTC))
        assert on_time.became_past_due == 0 and not smtp_inbox.to(email)

        first = statements_follow_up(today=day(1), now=datetime(2026, 12, 17, 16, tzinfo=UTC))
        statement.refresh_from_db()
        assert statement.status == Statement.Status.PAST_DUE and first.became_past_due >= 1
        [reminder] = smtp_inbox.to(email)
        assert statement.number in reminder["Subject"] and "$19.90" in reminder.get_content()
        statements_follow_up(today=day(1), now=datetime(2026, 12, 17, 18, tzinfo=UTC))  # again the same day
        assert len(smtp_inbox.to(email)) == 1
        statements_follow_up(today=day(8), now=datetime(2026, 12, 24, 16, tzinfo=UTC))  # a week later
        assert len(smtp_inbox.to(email)) == 2
        assert authorize_id_tag(tag).status == "Accepted"  # not blocked yet

        blocked = statements_follow_up(today=day(15), now=datetime(2026, 12, 31, 16, tzinfo=UTC))
        assert resident.pk in blocked.blocked
        resident.refresh_from_db()
        assert resident.account_standing == AccountStanding.OVERDUE and resident.overdue_since == day(0)
        assert authorize_id_tag(tag).status == "Blocked"

        statement_record_payment(statement_id=statement.pk, amount=Decimal("10.00"))
        resident.refresh_from_db()
        assert resident.account_standing == AccountStanding.OVERDUE  # half paid: still blocked
        paid = statement_record_payment(statement_id=statement.pk, amount=Decimal("9.90"))
        assert paid.status == Statement.Status.PAID and paid.amount_due == 0
        resident.refresh_from_db()
        assert resident.account_standing == AccountStanding.GOOD and authorize_id_tag(tag).status == "Accepted"


@pytest.mark.django_db
def test_a_refund_reopens_a_paid_statement_and_a_payment_never_lifts_a_managers_suspension(world):
    resident, statement, tag = _statement(world.maple, "5.00")
    with in_schema(world.maple.schema_name):
        statements_follow_up(today=day(20), now=datetime(2027, 1, 5, tzinfo=UTC))
        resident.refresh_from_db()
        assert resident.account_standing == AccountStanding.OVERDUE
        buildings.resident_suspend_charging(resident_id=resident.pk, reason="damaged the charger",
                                            by=world.acme_manager)
        statement_record_payment(statement_id=statement.pk, amount=Decimal("5.00"),
                                 now=datetime(2027, 1, 6, tzinfo=UTC))
        resident.refresh_from_db()
        assert resident.account_standing == AccountStanding.SUSPENDED
        assert authorize_id_tag(tag).status == "Blocked"
        reopened = statement_record_payment(statement_id=statement.pk, amount=Decimal("-5.00"),
                                            now=datetime(2027, 1, 7, tzinfo=UTC))
        assert reopened.status == Statement.Status.PAST_DUE and reopened.amount_due == Decimal("5.00")


@pytest.mark.django_db
def test_another_buildings_follow_up_touches_nothing_here(world, smtp_inbox):
    resident, statement, _ = _statement(world.maple)
    with in_schema(world.oak.schema_name):
        assert statements_follow_up(today=day(30)).became_past_due == 0
    with in_schema(world.maple.schema_name):
        statement.refresh_from_db()
        assert statement.status == Statement.Status.OPEN
    assert not smtp_inbox.to(resident.user.email)
