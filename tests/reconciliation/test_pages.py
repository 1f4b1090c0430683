"""The pages on the building's own host: the board and the managers see the bills, the report and the
investment's payback; a resident sees their own year only; other buildings' people get nothing (404)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
from django.test import Client

from apps.buildings.models import Resident
from apps.core.tenants import in_schema
from apps.reconciliation import services
from apps.reconciliation.models import Reconciliation, TrueUp, UtilityBill
from tests import factories
from tests.reconciliation.sessions import la, resident, session

MAPLE, OAK, HARBOR = "maple-court.localhost", "oak-tower.localhost", "harbor-view.localhost"
D = Decimal


def get(user, path: str, host: str = MAPLE):
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client.get(path)


@pytest.fixture
def maple_bill(world):
    alice = resident(world.maple, "alice")
    with in_schema(world.maple.schema_name):
        session(alice, la(2026, 4, 3, 12), la(2026, 4, 3, 14), 12_345)
        bill = services.utility_bill_enter(period_start=date(2026, 4, 1), period_end=date(2026, 4, 30),
                                           kwh=D("1000"), energy_charges=D("300.00"), demand_charges=D("50.00"),
                                           ev_kwh=D("15"), now=la(2026, 5, 2))
        services.reconciliation_compute(bill_id=bill.pk)
        services.investment_add(description="Chargers", amount=D("5000.00"), on=date(2026, 1, 10))
    return bill, alice


@pytest.mark.django_db
def test_board_and_managers_see_the_report_and_the_payback(world, maple_bill):
    bill, alice = maple_bill
    board = world.maple_board
    for allowed in (world.acme_manager, board):
        page = get(allowed, "/reconciliation/").content.decode()
        assert f'id="bill-{bill.pk}"' in page and "2026-04-01 \u2013 2026-04-30" in page and "17.70 %" in page
        report = get(allowed, f"/reconciliation/bills/{bill.pk}/")
        assert report.status_code == 200
        text = report.content.decode()
        # 15 kWh of 1,000: energy 4.50 + demand 0.75 = 5.25; losses (15 - 12.345) / 15 = 17.70 %.
        assert '<strong id="ev-cost">5.25</strong>' in text and 'id="loss-alert"' in text and "17.70 %" in text
        assert alice.user.email in text
        investment = get(allowed, "/reconciliation/investment/").content.decode()
        assert '<strong id="invested">5000.00</strong>' in investment and "Projected payback" not in investment
        # The month's margin: revenue 3.95 - cost 5.25 = -1.30: not recovering.
        assert '<strong id="recovered">-1.30</strong>' in investment and "Not recovering" in investment
    home = get(world.acme_manager, "/").content.decode()
    assert 'id="reconciliation-link"' in home


@pytest.mark.django_db
def test_outsiders_and_residents_get_nothing_of_the_report(world, maple_bill):
    bill, alice = maple_bill
    oak_board = factories.board_member(world.oak, f"board-{uuid.uuid4().hex[:6]}@oak.test")
    with in_schema(world.maple.schema_name):
        alice_user = Resident.objects.get(pk=alice.pk).user
    for stranger in (alice_user, world.maple_resident, world.harbor_manager, world.oak_resident, oak_board):
        for path in ("/reconciliation/", f"/reconciliation/bills/{bill.pk}/", "/reconciliation/investment/"):
            response = get(stranger, path)
            assert response.status_code == 404, (stranger, path)
            assert b"5.25" not in response.content and b"5000" not in response.content
    anonymous = get(None, "/reconciliation/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    # A bill of another building is not found on its own host either, nor another number here.
    assert get(world.harbor_manager, f"/reconciliation/bills/{bill.pk}/", host=HARBOR).status_code == 404
    assert get(world.acme_manager, f"/reconciliation/bills/{bill.pk + 1000}/").status_code == 404
    assert get(world.acme_manager, f"/reconciliation/bills/{bill.pk}/", host=OAK).status_code == 404


@pytest.mark.django_db
def test_a_resident_sees_their_own_year_and_nobody_else_does(world, maple_bill):
    _, alice = maple_bill
    with in_schema(world.maple.schema_name):
        alice_user = Resident.objects.get(pk=alice.pk).user
    path = f"/residents/{alice.pk}/summary?year=2026"
    mine = get(alice_user, path)
    assert mine.status_code == 200
    page = mine.content.decode()
    assert "<td>2026-04</td><td>1</td><td>12.345</td><td>3.95</td>" in page
    pdf = get(alice_user, path + "&format=pdf")
    assert pdf.status_code == 200 and pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    assert get(world.acme_manager, path).status_code == 200
    assert get(alice_user, f"/residents/{alice.pk}/summary?year=twenty").status_code == 400
    assert 'id="year-summary-link"' in get(alice_user, "/").content.decode()
    # Another resident, the board (not theirs to see), other buildings' people: 404.
    for stranger in (world.maple_resident, world.maple_board, world.harbor_manager, world.oak_resident):
        response = get(stranger, path)
        assert response.status_code == 404 and b"12.345" not in response.content
    assert get(world.harbor_resident, path, host=HARBOR).status_code == 404


def post(user, path: str, data: dict, host: str = MAPLE):
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client.post(path, data)


@pytest.mark.django_db
def test_managers_enter_and_approve_the_board_only_reads_outsiders_get_nothing(world):
    alice = resident(world.maple, "alice")
    with in_schema(world.maple.schema_name):
        session(alice, la(2026, 4, 3, 12), la(2026, 4, 3, 14), 12_345)
    form = {"from": "2026-04-01", "to": "2026-04-30", "kwh": "1,000", "energy": "300.00", "demand": "50"}
    for stranger in (world.maple_board, world.maple_resident, world.harbor_manager, world.oak_resident):
        assert post(stranger, "/reconciliation/", form).status_code == 404
    bad = post(world.acme_manager, "/reconciliation/", {**form, "kwh": "lots"})
    assert bad.status_code == 400 and "kwh: &#x27;lots&#x27; is not understood" in bad.content.decode()
    with in_schema(world.maple.schema_name):
        assert not UtilityBill.objects.exists()
    made = post(world.acme_manager, "/reconciliation/", form)
    assert made.status_code == 302
    listed = get(world.maple_board, "/reconciliation/").content.decode()
    assert "<td>350.00 USD</td>" in listed and "<td>—</td><td>—</td><td>—</td><td>not reconciled</td>" in listed
    assert 'id="bill-form"' not in listed
    with in_schema(world.maple.schema_name):
        bill = UtilityBill.objects.get()
        assert bill.energy_wh == 1_000_000 and bill.entered_by == world.acme_manager
    overlap = post(world.acme_manager, "/reconciliation/", form)
    assert overlap.status_code == 400 and "overlaps bill" in overlap.content.decode()
    path = f"/reconciliation/bills/{bill.pk}/"
    assert 'id="reconcile-form"' not in get(world.maple_board, path).content.decode()
    for stranger in (world.maple_board, world.maple_resident, world.harbor_manager, world.oak_resident):
        assert post(stranger, path, {"action": "approve"}).status_code == 404
    with in_schema(world.maple.schema_name):
        assert not Reconciliation.objects.exists()
    assert post(world.acme_manager, path, {"action": "approve"}).status_code == 302
    with in_schema(world.maple.schema_name):
        reconciliation = Reconciliation.objects.get()
        assert reconciliation.status == "approved" and reconciliation.approved_by == world.acme_manager
        # 300 x 12.345 / 1,000 = 3.70 + demand 0.62 = 4.32; Alice paid 3.95: true-up 0.37, under the minimum.
        assert reconciliation.ev_cost == D("4.32") and not TrueUp.objects.exists()
    assert 'id="reconcile-form"' not in get(world.acme_manager, path).content.decode()
