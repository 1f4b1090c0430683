"""A resident on a phone-sized screen, in a real browser: starts charging from the phone, watches the session's
energy and cost move without reloading, downloads a statement PDF. A board member exports the month's audit
report. A resident of another building gets nothing of either."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import websockets
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from apps.buildings.models import ParkingSpot, Resident, Unit
from apps.charging.models import Connector
from apps.core.tenants import in_schema
from apps.statements import services as statements
from apps.statements.models import StatementLine
from tests import factories
from tests.browser.conftest import logged_in, screenshot
from tests.ocpp.charger import FakeCharger, ws_headers

HOST = "maple-court.localhost"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


async def _stopped(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _ago(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def _household_with_spot(world, cp_id: str):
    n = uuid.uuid4().hex[:6].upper()
    user = factories.resident(world.maple, f"p{n.lower()}@maple.test", f"P{n}", id_tags=(f"K{n}",))
    with in_schema(world.maple.schema_name):
        spot = ParkingSpot.objects.create(label=f"G{n}", unit=Unit.objects.get(number=f"P{n}"))
        Connector.objects.filter(charge_point__charge_point_id=cp_id, connector_id=1).update(parking_spot=spot)
        resident = Resident.objects.get(user=user)
        draft = statements.statement_draft_create(resident=resident, currency="USD", lines=[statements.LineInput(
            kind=StatementLine.Kind.SESSION, description="Session 1", amount=Decimal("12.34"))])
        statement = statements.statement_finalize(statement_id=draft.pk)
    return user, statement.pk


async def test_a_resident_on_a_phone_starts_watches_a_session_and_downloads_a_statement(chromium, web, world,
                                                                                      committed, tmp_path):
    cp_id = f"PH-{uuid.uuid4().hex[:8].upper()}"
    await sync_to_async(factories.charger)(world.maple, cp_id)
    user, statement_pk = await sync_to_async(_household_with_spot)(world, cp_id)
    async with websockets.connect(f"{web.url}{cp_id}", subprotocols=["ocpp1.6"],
                                  additional_headers=ws_headers(cp_id)) as ws:
        charger = FakeCharger(ws)
        await charger.boot()
        await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"})
        context = await logged_in(chromium, user, HOST, web.port, **PHONE)
        page = await context.new_page()
        pump = asyncio.ensure_future(charger.settle(60))  # the charger answers what the platform sends it
        try:
            await page.goto(f"http://{HOST}:{web.port}/me/")
            await expect(page.locator("#no-session")).to_be_visible()
            await page.locator(f"#start-{cp_id}-1").click()
            await expect(page.locator("#confirm")).to_contain_text("$0.32 per kWh")  # the tariff, before starting
            await page.locator("#confirm-button").click()
            await expect(page.locator(".messages")).to_contain_text("The charger accepted", timeout=15_000)
            await _stopped(pump)
            [tag] = [p["idTag"] for a, p in charger.received_calls if a == "RemoteStartTransaction"]
            started = await charger.call("StartTransaction", {"connectorId": 1, "idTag": tag, "meterStart": 0,
                                                              "timestamp": _ago(40)})
            tx = started[2]["transactionId"]
            await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
            await charger.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{
                "timestamp": _ago(20), "sampledValue": [
                    {"measurand": "Energy.Active.Import.Register", "value": "2000", "unit": "Wh"},
                    {"measurand": "Power.Active.Import", "value": "6900", "unit": "W"}]}]})
            # The page learns of the new session by itself (it reloads once to show it), then updates in place.
            session = page.locator("[data-session]")
            await expect(session).to_have_count(1, timeout=15_000)
            await expect(session.locator('[data-f="energy_kwh"]')).to_have_text("2.00 kWh", timeout=15_000)
            await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"), timeout=15_000)
            await page.evaluate("window.notReloaded = true")
            await charger.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [{
                "timestamp": _ago(0), "sampledValue": [
                    {"measurand": "Energy.Active.Import.Register", "value": "4500", "unit": "Wh"},
                    {"measurand": "Power.Active.Import", "value": "7100", "unit": "W"}]}]})
            await expect(session.locator('[data-f="energy_kwh"]')).to_have_text("4.50 kWh", timeout=15_000)
            await expect(session.locator('[data-f="power_kw"]')).to_have_text("7.1 kW")
            await expect(session.locator('[data-f="cost_text"]')).to_have_text(re.compile(r"^\$\d+\.\d\d$"))
            assert await page.evaluate("window.notReloaded") is True
            assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["viewport"]["width"]  # fits
            await screenshot(page, "resident")
            async with page.expect_download() as waiting:
                await page.locator(f"#pdf-{statement_pk}").click()
            download = await waiting.value
            saved = tmp_path / "statement.pdf"
            await download.save_as(saved)
            assert saved.read_bytes().startswith(b"%PDF") and download.suggested_filename.endswith(".pdf")
        finally:
            await _stopped(pump)
            await context.close()


async def test_a_board_member_exports_the_months_audit_report(chromium, web, world, committed, tmp_path):
    context = await logged_in(chromium, world.maple_board, HOST, web.port)
    page = await context.new_page()
    try:
        await page.goto(f"http://{HOST}:{web.port}/")
        link = page.locator("#audit a", has_text="XLSX")
        async with page.expect_download(timeout=60_000) as waiting:
            await link.click()
        download = await waiting.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        assert saved.suffix == ".xlsx" and saved.read_bytes().startswith(b"PK")  # an Office Open XML package
    finally:
        await context.close()


async def test_a_resident_of_another_building_gets_nothing(chromium, web, world, committed):
    context = await logged_in(chromium, world.oak_resident, HOST, web.port, **PHONE)
    try:
        page = await context.new_page()
        for path in ("/me/", "/", "/audit/2026-01.xlsx"):
            answer = await page.goto(f"http://{HOST}:{web.port}{path}")
            assert answer is not None and answer.status == 404, path
            assert "Maple" not in await page.content() or path == "/"
    finally:
        await context.close()
