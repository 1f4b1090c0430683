"""A resident whose account is overdue (or suspended) is Blocked everywhere: Authorize, StartTransaction,
and the local list the chargers get."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from asgiref.sync import sync_to_async

from apps.buildings import services as buildings
from apps.buildings.models import AccountStanding, Resident
from apps.charging import selectors
from apps.charging.local_lists import local_list_entries
from apps.charging.models import ChargingSession
from apps.core.tenants import in_schema, run_in_schema
from tests import factories
from tests.helpers import iso


def _resident(world) -> tuple[int, str]:
    tag = f"OD{uuid.uuid4().hex[:10].upper()}"
    user = factories.resident(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    with in_schema(world.maple.schema_name):
        return Resident.objects.get(user=user).pk, tag


async def test_overdue_account_is_blocked_at_authorize_start_and_in_the_local_list(maple_schema, connected, world):
    resident_id, tag = await sync_to_async(_resident)(world)

    async def authorize():
        return (await connected.call("Authorize", {"idTag": tag}))[2]["idTagInfo"]["status"]

    assert await authorize() == "Accepted"
    await run_in_schema(maple_schema, buildings.resident_mark_overdue, resident_id=resident_id,
                    overdue_since=date(2026, 10, 15), reason="Statement 2026-09 unpaid")
    resident = await run_in_schema(maple_schema, Resident.objects.get, pk=resident_id)
    assert resident.account_standing == AccountStanding.OVERDUE and resident.charging_blocked
    assert resident.overdue_since == date(2026, 10, 15) and resident.standing_changed_at is not None
    assert resident.standing_changed_by is None  # billing, not a person

    assert await authorize() == "Blocked"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    started = await connected.call("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 0,
                                                        "timestamp": iso(at)})
    # Stored all the same (the charger may have started it offline), but answered Blocked.
    assert started[2]["idTagInfo"]["status"] == "Blocked"
    session = await run_in_schema(maple_schema, ChargingSession.objects.get, transaction_id=started[2]["transactionId"])
    assert session.authorization_status == "Blocked" and session.resident_id == resident_id
    entries = await run_in_schema(maple_schema, local_list_entries)
    assert entries[tag]["status"] == "Blocked"

    # Paid: the card works again (the open session on this charger is no ConcurrentTx here).
    await run_in_schema(maple_schema, buildings.resident_restore_standing, resident_id=resident_id, reason="paid")
    assert await authorize() == "Accepted"
    assert (await run_in_schema(maple_schema, local_list_entries))[tag]["status"] == "Accepted"


async def test_manager_suspension_records_who_and_why(maple_schema, world, committed):
    resident_id, tag = await sync_to_async(_resident)(world)
    await run_in_schema(maple_schema, buildings.resident_suspend_charging, resident_id=resident_id,
                    reason="damaged a charger", by=world.acme_manager)
    resident = await run_in_schema(maple_schema, Resident.objects.get, pk=resident_id)
    assert resident.account_standing == AccountStanding.SUSPENDED
    assert resident.standing_changed_by_id == world.acme_manager.pk
    assert resident.standing_reason == "damaged a charger"
    assert (await run_in_schema(maple_schema, selectors.authorize_id_tag, tag)).status == "Blocked"
