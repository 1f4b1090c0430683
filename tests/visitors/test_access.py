"""Who reaches what of the visitors' pages: a code works on its own building's host only; a visit's token is the
only key to that visit (another visit's token, or the right token under another connector's code, gets 404);
the label sheet is for the company's managers. Bad input gets a 400 that names it; floods get 429."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from apps.charging.models import Connector
from apps.core.tenants import in_schema
from apps.visitors import labels, ratelimit
from apps.visitors.models import Visit
from tests import factories
from tests.helpers import iso
from tests.visitors.conftest import HARBOR, MAPLE, OAK, a_client, codes_of, in_thread, pay, post, while_charger_answers

pytestmark = pytest.mark.usefixtures("stripe_ready")


async def test_a_visit_is_seen_and_stopped_with_its_own_token_only(maple_schema, visitor_charger, localstripe):
    codes = await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id)
    mine = await in_thread(pay, localstripe, codes[1], "10.00")
    other = await in_thread(pay, localstripe, codes[2], "10.00")
    await while_charger_answers(visitor_charger, post, mine.client, f"/v/{codes[1]}/visits/{mine.token}/start")
    tag = (await in_thread(lambda: _visit(maple_schema, mine.token))).id_tag
    started = await visitor_charger.call("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 0,
                                                              "timestamp": iso(datetime.now(UTC) - timedelta(minutes=5))})
    assert started[2]["idTagInfo"]["status"] == "Accepted"
    stranger = a_client()

    def get(path, host=MAPLE):
        return stranger.get(path, HTTP_HOST=host)

    # The visitor of connector 2 (or anyone guessing) gets nothing of the visit on connector 1.
    for path in (f"/v/{codes[1]}/visits/{other.token}", f"/v/{codes[2]}/visits/{mine.token}",
                 f"/v/{codes[1]}/visits/{uuid.uuid4().hex}"):
        assert (await in_thread(get, path)).status_code == 404
        assert (await in_thread(post, stranger, path + "/stop")).status_code == 404
        assert (await in_thread(post, stranger, path + "/start")).status_code == 404
    # Another building's host does not know Maple Court's codes, nor its visits.
    for host in (OAK, HARBOR):
        assert (await in_thread(get, f"/v/{codes[1]}", host)).status_code == 404
        assert (await in_thread(get, f"/v/{codes[1]}/visits/{mine.token}", host)).status_code == 404
        assert (await in_thread(post, stranger, f"/v/{codes[1]}/visits/{mine.token}/stop", None, host)).status_code == 404
        assert (await in_thread(get, f"/v/{codes[1]}/quote?kwh=10", host)).status_code == 404
    assert not any(action == "RemoteStopTransaction" for action, _ in visitor_charger.received_calls)
    # Its own token sees it charging.
    own = await in_thread(lambda: mine.client.get(f"/v/{codes[1]}/visits/{mine.token}", HTTP_HOST=MAPLE))
    assert own.status_code == 200 and own.json()["status"] == "charging"


def _visit(schema: str, token: str) -> Visit:
    with in_schema(schema):
        return Visit.objects.get(token=token)


async def test_the_form_refuses_bad_input_with_the_reason(maple_schema, visitor_charger, localstripe):
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[1]
    client = a_client()
    cases = [
        ({"email": "not-an-address", "amount": "10.00"}, "email"),
        ({"email": "a@example.com"}, "amount is required"),
        ({"email": "a@example.com", "amount": "ten"}, "is not a number"),
        ({"email": "a@example.com", "amount": "NaN"}, "is not a number"),
        ({"email": "a@example.com", "amount": "4.99"}, "amount must be from 5 to 150 USD"),
        ({"email": "a@example.com", "amount": "151"}, "amount must be from 5 to 150 USD"),
        ({"email": "a@example.com", "amount": "10.001"}, "amount"),
    ]
    for data, message in cases:
        answer = await in_thread(post, client, f"/v/{code}/visits", data)
        assert answer.status_code == 400 and message in answer.json()["error"], (data, answer.content)
    bad_json = await in_thread(lambda: client.post(f"/v/{code}/visits", "{", content_type="application/json",
                                                   HTTP_HOST=MAPLE))
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]
    quote = await in_thread(lambda: client.get(f"/v/{code}/quote?kwh=0", HTTP_HOST=MAPLE))
    assert quote.status_code == 400 and "kwh" in quote.json()["error"]
    quote = await in_thread(lambda: client.get(f"/v/{code}/quote?kwh=5&minutes=61", HTTP_HOST=MAPLE))
    assert quote.status_code == 200 and (quote.json()["tariff"], quote.json()["total"]) == ("Visitors", "3.00")
    # Starting a visit whose card was never confirmed: the hold is checked at Stripe, not taken on trust.
    made = await in_thread(post, client, f"/v/{code}/visits", {"email": "a@example.com", "amount": "10.00"})
    token = made.json()["visit"]
    answer = await in_thread(post, client, f"/v/{code}/visits/{token}/start")
    assert answer.status_code == 400 and "not authorized yet" in answer.json()["error"]
    assert not any(action == "RemoteStartTransaction" for action, _ in visitor_charger.received_calls)


async def test_a_connector_offline_takes_no_visit(maple_schema, new_charger, localstripe):
    charge_point_id = await in_thread(new_charger)
    code = (await in_thread(codes_of, maple_schema, charge_point_id))[1]
    client = a_client()
    page = await in_thread(lambda: client.get(f"/v/{code}", HTTP_HOST=MAPLE))
    assert page.status_code == 200 and "Not available now (Offline)" in page.content.decode()
    answer = await in_thread(post, client, f"/v/{code}/visits", {"email": "a@example.com", "amount": "10.00"})
    assert answer.status_code == 400 and "not available" in answer.json()["error"]


def test_authorizations_are_rate_limited_per_address(world, committed):
    client = a_client()  # an address of its own
    limit = ratelimit.LIMITS["authorize"]["address"]
    # Guessing codes counts too: the limit applies before the code is looked up.
    answers = [post(client, f"/v/guess{n}/visits", {"email": "a@example.com", "amount": "10"}).status_code
               for n in range(limit + 2)]
    assert answers == [404] * limit + [429, 429]
    # Another address is not held back.
    assert post(a_client(), "/v/guess0/visits", {"email": "a@example.com", "amount": "10"}).status_code == 404


def test_the_label_sheet_has_one_qr_code_per_connector(world, committed, maple_schema, tmp_path):
    with in_schema(maple_schema):
        html = labels.render_html()
        connectors = Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True)
        expected = connectors.count()
        codes = set(connectors.values_list("visitor_code__code", flat=True))
    assert expected >= 2 and len(re.findall(r"<svg\b", html)) == expected
    for code in codes:
        assert f"http://maple-court.localhost:8000/v/{code}" in html
    assert "$2.40 per hour" in html and "Maple Court" in html
    out = tmp_path / "labels.pdf"
    # The PDF of one charger's labels (the whole building's sheet grows with every charger the tests add).
    call_command("visitor_labels", "--condominium", "maple-court", "--output", str(out), "--charger", "TEST-MAPLE-1")
    assert out.read_bytes().startswith(b"%PDF")
    # Codes are stable: a second sheet carries the same ones.
    with in_schema(maple_schema):
        assert set(Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True)
                   .values_list("visitor_code__code", flat=True)) == codes


def test_only_the_company_s_managers_download_the_labels(world, committed):
    client = a_client()
    client.force_login(world.acme_manager)
    answer = client.get("/visitors/labels.pdf?charger=TEST-MAPLE-1", HTTP_HOST=MAPLE)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    resident = factories.resident(world.maple, f"r-{uuid.uuid4().hex[:8]}@maple.test", "101")
    for user in (world.harbor_manager, world.oak_resident, world.harbor_resident, world.maple_resident, resident):
        client = a_client()
        client.force_login(user)
        assert client.get("/visitors/labels.pdf", HTTP_HOST=MAPLE).status_code == 404, user.email
    assert a_client().get("/visitors/labels.pdf", HTTP_HOST=MAPLE).status_code == 302  # to the login
