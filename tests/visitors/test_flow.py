"""A visitor pays a pre-authorization, the platform starts the charger with a one-time tag, captures what the
session cost at the stop and e-mails the receipt; refusals release the hold; nothing is captured twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.charging.models import OneTimeTag
from apps.core.tenants import in_schema, run_in_schema
from apps.visitors import services, tasks
from apps.visitors.models import Visit
from tests.helpers import iso
from tests.visitors.conftest import a_client, codes_of, in_thread, pay
from tests.visitors.visits import charge, latest_charge, start_visit, visit_of

pytestmark = pytest.mark.usefixtures("stripe_ready")


async def test_full_flow_captures_the_priced_amount_and_mails_a_receipt(
        maple_schema, visitor_charger, localstripe, smtp_inbox):
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[1]
    page = await in_thread(a_client().get, f"/v/{code}", HTTP_HOST="maple-court.localhost")
    assert page.status_code == 200
    html = page.content.decode()
    assert "js.stripe.com/v3" in html and "$2.40 per hour" in html and "Available" in html

    started = await in_thread(pay, localstripe, code, "10.00", "guest@example.com")
    answer = await start_visit(visitor_charger, started)
    assert answer == {"status": "starting", "charger_answer": "Accepted"}
    visit = await in_thread(visit_of, maple_schema, started.token)
    assert visitor_charger.received_calls[-1] == ("RemoteStartTransaction", {"connectorId": 1, "idTag": visit.id_tag})
    assert visit.id_tag.startswith("V") and len(visit.id_tag) == 16
    assert (visit.card_brand, visit.card_last4) == ("visa", "4242")

    await charge(visitor_charger, maple_schema, started, minutes=61)

    # The stop completed the visit in its own transaction; the worker settles it (run here, twice: a retry).
    visit = await in_thread(visit_of, maple_schema, started.token)
    assert visit.status == Visit.Status.COMPLETED and visit.session is not None
    assert await in_thread(tasks.settle_visit, maple_schema, visit.pk) == "captured"
    assert await in_thread(tasks.settle_visit, maple_schema, visit.pk) == "captured"
    visit = await in_thread(visit_of, maple_schema, started.token)
    # 61 minutes of the visitors' tariff ($2.40/h in 15-minute steps): 5 steps, $3.00 (docs/tariffs.md).
    assert (visit.price_total, visit.captured_amount, visit.shortfall) == (Decimal("3.00"), Decimal("3.00"), 0)
    intent = localstripe.payment_intent(started.intent_id)
    assert intent["status"] == "succeeded"
    charge_obj = latest_charge(localstripe, started.intent_id)
    assert charge_obj["captured"] and charge_obj["amount"] - charge_obj["amount_refunded"] == 300  # the rest released

    mails = [m for m in smtp_inbox.messages if "guest@example.com" in m["To"]]
    assert len(mails) == 1
    body = mails[0].get_payload(decode=True).decode()
    assert "3.00 USD" in body and "visa **** 4242" in body and "3.000 kWh" in body and "10.00 USD held" in body and "61 min" in body

    status = await in_thread(started.client.get, f"/v/{code}/visits/{started.token}", HTTP_HOST="maple-court.localhost")
    assert status.json()["status"] == "captured" and status.json()["captured"] == "3.00"

    # The tag was used up: the same tag at the same connector is refused from now on.
    again = await visitor_charger.call("StartTransaction", {"connectorId": 1, "idTag": visit.id_tag, "meterStart": 9000,
                                                             "timestamp": iso(datetime.now(UTC))})
    assert again[2]["idTagInfo"]["status"] == "Invalid"
    authorize = await visitor_charger.call("Authorize", {"idTag": visit.id_tag})
    assert authorize[2]["idTagInfo"]["status"] == "Invalid"


async def test_refused_remote_start_releases_the_hold_and_says_nothing_was_charged(
        maple_schema, visitor_charger, localstripe, smtp_inbox):
    visitor_charger.answers["RemoteStartTransaction"] = {"status": "Rejected"}
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[1]
    started = await in_thread(pay, localstripe, code, "12.00", "refused@example.com")
    answer = await start_visit(visitor_charger, started)
    assert answer == {"status": "cancelled", "charger_answer": "Rejected"}
    assert localstripe.payment_intent(started.intent_id)["status"] == "canceled"
    visit = await in_thread(visit_of, maple_schema, started.token)
    assert visit.captured_amount == 0 and visit.receipt_sent_at is not None
    mails = [m for m in smtp_inbox.messages if "refused@example.com" in m["To"]]
    assert len(mails) == 1 and "Nothing was charged" in mails[0]["Subject"]
    # The tag it would have used is refused.
    tag = await run_in_schema(maple_schema, OneTimeTag.objects.get, id_tag=visit.id_tag)
    assert tag.revoked_at is not None
    refused = await visitor_charger.call("StartTransaction", {"connectorId": 1, "idTag": visit.id_tag,
                                                              "meterStart": 0, "timestamp": iso(datetime.now(UTC))})
    assert refused[2]["idTagInfo"]["status"] == "Invalid"


async def test_a_price_above_the_hold_captures_the_hold_and_records_the_shortfall(
        world, maple_schema, visitor_charger, localstripe, smtp_inbox):
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[1]
    started = await in_thread(pay, localstripe, code, "5.00", "long@example.com")
    await start_visit(visitor_charger, started)
    await charge(visitor_charger, maple_schema, started, minutes=180)
    # The settlement's task message is lost (a broker restart): the sweep settles the completed visit.

    def sweep():
        with in_schema(maple_schema):
            return services.visits_sweep()

    assert (await in_thread(sweep))["settled"] >= 1
    visit = await in_thread(visit_of, maple_schema, started.token)
    assert visit.status == Visit.Status.CAPTURED and visit.receipt_sent_at is not None
    # 3 hours: 12 steps of $0.60 = $7.20, above the $5.00 held.
    assert (visit.price_total, visit.captured_amount, visit.shortfall) == (Decimal("7.20"), Decimal("5.00"),
                                                                           Decimal("2.20"))
    charge_obj = latest_charge(localstripe, started.intent_id)
    assert charge_obj["amount"] - charge_obj["amount_refunded"] == 500

    # Managers see it among the visits needing attention; nobody else sees the list.
    def visits_seen_by(user):
        client = a_client()
        client.force_login(user)
        return client.get("/visitors/visits", HTTP_HOST="maple-court.localhost")

    answer = await in_thread(visits_seen_by, world.acme_manager)
    assert answer.status_code == 200
    flagged = [row for row in answer.json()["attention"] if row["id"] == visit.pk]
    assert flagged and (flagged[0]["shortfall"], flagged[0]["captured"]) == ("2.20", "5.00")
    for user in (world.harbor_manager, world.maple_resident, world.maple_board, world.oak_resident):
        assert (await in_thread(visits_seen_by, user)).status_code == 404, user.email


async def test_a_duplicated_stop_and_settling_again_capture_once(maple_schema, visitor_charger, localstripe, smtp_inbox):
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[1]
    started = await in_thread(pay, localstripe, code, "10.00", "twice@example.com")
    await start_visit(visitor_charger, started)
    payload = await charge(visitor_charger, maple_schema, started, minutes=31)
    again = await visitor_charger.call("StopTransaction", payload)  # the charger did not get our answer
    assert again[0] == 3
    visit = await in_thread(visit_of, maple_schema, started.token)
    for _ in range(2):
        await in_thread(tasks.settle_visit, maple_schema, visit.pk)

    def sweep():
        with in_schema(maple_schema):
            return services.visits_sweep()

    assert (await in_thread(sweep))["settled"] == 0  # nothing left to settle
    visit = await in_thread(visit_of, maple_schema, started.token)
    assert (visit.status, visit.captured_amount) == (Visit.Status.CAPTURED, Decimal("1.80"))  # 3 steps
    charge_obj = latest_charge(localstripe, started.intent_id)
    assert charge_obj["captured"] and [r["amount"] for r in charge_obj["refunds"]["data"]] == [820]  # one capture of 180, the rest released once
    assert len([m for m in smtp_inbox.messages if "twice@example.com" in m["To"]]) == 1


async def test_a_start_that_never_comes_is_released_by_the_sweep(maple_schema, visitor_charger, localstripe, smtp_inbox):
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[2]
    started = await in_thread(pay, localstripe, code, "10.00", "nocar@example.com")
    await start_visit(visitor_charger, started)

    def sweep(now):
        with in_schema(maple_schema):
            return services.visits_sweep(now=now)

    assert (await in_thread(sweep, datetime.now(UTC)))["released"] == 0  # not yet
    later = datetime.now(UTC) + services.START_TIMEOUT + timedelta(seconds=5)
    assert (await in_thread(sweep, later))["released"] == 1
    assert (await in_thread(sweep, later))["released"] == 0
    visit = await in_thread(visit_of, maple_schema, started.token)
    assert visit.status == Visit.Status.CANCELLED and "did not start" in visit.note
    assert localstripe.payment_intent(started.intent_id)["status"] == "canceled"
    assert len([m for m in smtp_inbox.messages if "nocar@example.com" in m["To"]]) == 1
    # Its tag no longer starts anything.
    refused = await visitor_charger.call("StartTransaction", {"connectorId": 2, "idTag": visit.id_tag,
                                                              "meterStart": 0, "timestamp": iso(datetime.now(UTC))})
    assert refused[2]["idTagInfo"]["status"] == "Invalid"
