"""A visitor's visit driven from a test: started, charged and stopped through the visitor pages and a scripted
charger, and the visit and its Stripe charge read back. Shared by the visitor tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.core.tenants import in_schema
from apps.visitors.models import Visit
from tests.helpers import iso
from tests.visitors.conftest import in_thread, post, while_charger_answers


def visit_of(schema: str, token: str) -> Visit:
    with in_schema(schema):
        return Visit.objects.select_related("session").get(token=token)


def latest_charge(localstripe, intent_id: str) -> dict:
    charge = localstripe.payment_intent(intent_id)["latest_charge"]
    if isinstance(charge, str):
        charge = localstripe.call("GET", f"/v1/charges/{charge}")[1]
    return charge


async def start_visit(charger, started) -> dict:
    answer = await while_charger_answers(charger, post, started.client, f"/v/{started.code}/visits/{started.token}/start")
    assert answer.status_code in (200, 409), answer.content
    return answer.json()


async def charge(charger, maple_schema, started, *, minutes: int, meter_stop: int = 4000) -> dict:
    """The car plugs in (StartTransaction with the visit's tag), charges ``minutes``, the visitor stops."""
    visit = await in_thread(visit_of, maple_schema, started.token)
    now = datetime.now(UTC).replace(microsecond=0)
    start = await charger.call("StartTransaction", {"connectorId": 1, "idTag": visit.id_tag, "meterStart": 1000,
                                                     "timestamp": iso(now - timedelta(minutes=minutes))})
    assert start[2]["idTagInfo"]["status"] == "Accepted"
    transaction_id = start[2]["transactionId"]
    await charger.call("MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": [
        {"timestamp": iso(now - timedelta(minutes=1)), "sampledValue": [
            {"value": str(meter_stop - 100), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]})
    status = await in_thread(started.client.get, f"/v/{started.code}/visits/{started.token}",
                             HTTP_HOST="maple-court.localhost")
    assert status.status_code == 200 and status.json()["status"] == "charging" and status.json()["can_stop"]
    stop = await while_charger_answers(charger, post, started.client, f"/v/{started.code}/visits/{started.token}/stop")
    assert stop.status_code == 200, stop.content
    assert charger.received_calls[-1] == ("RemoteStopTransaction", {"transactionId": transaction_id})
    payload = {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": iso(now), "idTag": visit.id_tag,
               "reason": "Remote"}
    stopped = await charger.call("StopTransaction", payload)
    assert stopped[0] == 3
    return payload
