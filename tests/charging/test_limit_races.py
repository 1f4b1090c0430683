"""Charging limits under races: the balancer writing the limits it wants while a dispatch records what the
chargers answered, on the same rows at the same instant (tests/races.py makes them race every time).

The rule: every writer of ConnectorLimit rows locks all the rows it will write first, in connector order.
Two writers that lock the same rows in different orders deadlock, and PostgreSQL then fails one of them: a
balancing run lost, or a dispatch round whose answers are not recorded (seen in a congested-night run).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.charging import smart_charging as limits_db
from apps.charging.models import Connector, ConnectorLimit
from apps.charging.smart_charging import Limit, LimitOutcome, limit_record, limits_set
from apps.core.tenants import in_schema
from tests import factories
from tests.races import race

# The lowest connector's row, locked: whoever locks in connector order waits here before holding anything.
HOLD_FIRST_ROW = "SELECT 1 FROM charging_connectorlimit WHERE connector_id = %s FOR UPDATE"


@pytest.fixture
def no_dispatch_queued():
    """limits_set asks for a dispatch on commit: noted here, not queued for a worker of a later test."""
    requested: list[str] = []
    limits_db.limit_dispatch_queue(requested.append)
    yield requested
    from apps.ocpp.tasks import queue_dispatch

    limits_db.limit_dispatch_queue(queue_dispatch)


@pytest.fixture
def two_limits(world, committed, maple_schema, no_dispatch_queued) -> tuple[int, int]:
    """Two connectors of one charger, each with a limit already wanted (their rows exist), lowest pk first."""
    charger = factories.charger(world.maple, f"LIM-{uuid.uuid4().hex[:10].upper()}")
    with in_schema(maple_schema):
        first, second = Connector.objects.filter(charge_point=charger).order_by("pk").values_list("pk", flat=True)
        limits_set(limits={first: Limit(Decimal(16)), second: Limit(Decimal(16))}, lease_s=600, reason="start")
    return first, second


def test_a_dispatch_recording_its_answers_does_not_deadlock_with_a_balancing_run(
        maple_schema, two_limits, no_dispatch_queued):
    first, second = two_limits
    planned_at = timezone.now() - timedelta(seconds=1)
    # The dispatch's outcomes, the higher connector's first (a profile answered; the other one unchanged): a
    # record that wrote them in this order would hold the higher row while waiting for the lower one.
    outcomes = [
        LimitOutcome(connector_pk=second, status=ConnectorLimit.Status.ACCEPTED, sent={"csChargingProfiles": {}},
                     sent_a=Decimal(16), sent_unit="A", sent_purpose="TxProfile", sent_at=planned_at,
                     applied_a=Decimal(16), transaction_id=None),
        LimitOutcome(connector_pk=first, status=ConnectorLimit.Status.UNCHANGED, note="unchanged"),
    ]

    def balancing_run() -> int:
        return limits_set(limits={first: Limit(Decimal(10)), second: Limit(Decimal(8))}, lease_s=600,
                          reason="a rise on L1")

    def dispatch_record() -> None:
        limit_record(outcomes, planned_at=planned_at)

    # The run queues first behind the held row; the record comes second. Once the row is free, the run takes
    # it and goes on to the second row: a record holding that one while it waits for the first is a deadlock.
    changed, _ = race(maple_schema, HOLD_FIRST_ROW, balancing_run, dispatch_record, params=[first])

    assert changed == 2
    with in_schema(maple_schema):
        rows = {row.connector_id: row for row in ConnectorLimit.objects.filter(connector_id__in=two_limits)}
    # Both writes are there: the run's new limits (the record does not touch desired_a) and the record's answers.
    assert (rows[first].desired_a, rows[second].desired_a) == (Decimal(10), Decimal(8))
    assert rows[second].status == ConnectorLimit.Status.ACCEPTED and rows[second].applied_a == Decimal(16)
    assert rows[first].status == ConnectorLimit.Status.UNCHANGED
    # The run asked after the plan was read: its limits stay wanted for the next dispatch.
    assert rows[first].dirty and rows[second].dirty
    assert no_dispatch_queued == [maple_schema] * 2  # the limits' first wish, then the run's

