"""The building console in a real browser: a manager watches a charger start charging without reloading the page;
people without the right get nothing."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid

import websockets
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from tests import factories
from tests.browser.conftest import logged_in, screenshot
from tests.ocpp.charger import FakeCharger, ws_headers

HOST = "maple-court.localhost"


async def test_a_manager_sees_a_charger_go_from_available_to_charging_without_reloading(chromium, web, world,
                                                                                        committed):
    cp_id = f"WEB-{uuid.uuid4().hex[:8].upper()}"
    await sync_to_async(factories.charger)(world.maple, cp_id)
    context = await logged_in(chromium, world.acme_manager, HOST, web.port)
    page = await context.new_page()
    try:
        await page.goto(f"http://{HOST}:{web.port}/console/")
        await expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"), timeout=15_000)
        # The chart of the last hours is drawn from the vendored uPlot (no CDN), in the page itself.
        await expect(page.locator("#chart canvas").first).to_be_visible(timeout=10_000)
        await expect(page.locator("#load-chart")).to_have_attribute("data-points", re.compile(r"^\d+$"))
        await page.evaluate("window.notReloaded = true")
        row = page.locator(f'tr[data-connector="{cp_id}#1"]')
        await expect(row.locator('[data-f="online"]')).to_have_text("offline")
        async with websockets.connect(f"{web.url}{cp_id}", subprotocols=["ocpp1.6"],
                                      additional_headers=ws_headers(cp_id)) as ws:
            charger = FakeCharger(ws)
            await charger.boot()
            await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})
            await expect(row.locator('[data-f="status"]')).to_have_text("Available", timeout=10_000)
            await expect(row.locator('[data-f="online"]')).to_have_text("online")
            await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
            await charger.call("MeterValues", {"connectorId": 1, "meterValue": [{
                "timestamp": "2026-03-01T20:00:00Z", "sampledValue": [
                    {"value": "15.9", "measurand": "Current.Import", "phase": "L1", "unit": "A"}]}]})
            await expect(row.locator('[data-f="status"]')).to_have_text("Charging", timeout=10_000)
            await expect(row.locator('[data-f="currents_a"]')).to_have_text("15.9 / — / —", timeout=10_000)
            # The supply's EV load on the connector's phase moved with it.
            supply = page.locator('tr[data-node="supply"] [data-phase="L1"] [data-f="ev_a"]')
            await expect(supply).not_to_have_text("0.0")
            assert await page.evaluate("window.notReloaded") is True  # the same page, updated in place
            await screenshot(page, "console")
        # The charger's connection ends: the console says so, still without reloading.
        await expect(row.locator('[data-f="online"]')).to_have_text("offline", timeout=15_000)
        assert await page.evaluate("window.notReloaded") is True
    finally:
        await context.close()


async def test_a_resident_on_a_phone_and_another_buildings_manager_get_nothing(chromium, web, world, committed):
    for user in (world.maple_resident, world.harbor_manager):
        context = await logged_in(chromium, user, HOST, web.port, viewport={"width": 390, "height": 844},
                                  is_mobile=True)
        try:
            page = await context.new_page()
            answer = await page.goto(f"http://{HOST}:{web.port}/console/")
            assert answer is not None and answer.status == 404
            assert "TEST-MAPLE-1" not in await page.content()
        finally:
            await context.close()


async def test_a_manager_stops_a_session_from_the_browser_and_it_appears_among_the_finished(chromium, web, world,
                                                                                            committed):
    cp_id = f"STOP-{uuid.uuid4().hex[:8].upper()}"
    await sync_to_async(factories.charger)(world.maple, cp_id)
    context = await logged_in(chromium, world.acme_manager, HOST, web.port)
    page = await context.new_page()
    async with websockets.connect(f"{web.url}{cp_id}", subprotocols=["ocpp1.6"],
                                  additional_headers=ws_headers(cp_id)) as ws:
        charger = FakeCharger(ws)
        await charger.boot()
        await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
        started = await charger.call("StartTransaction", {"connectorId": 1, "idTag": "04A1B2C3D4", "meterStart": 500,
                                                          "timestamp": "2026-03-01T20:00:00Z"})
        tx = started[2]["transactionId"]
        pump = asyncio.ensure_future(charger.settle(60))  # the charger answers the platform's calls meanwhile
        try:
            await page.goto(f"http://{HOST}:{web.port}/console/")
            row = page.locator(f'tr[data-connector="{cp_id}#1"]')
            await expect(row.locator('[data-f="resident"]')).to_have_text("Alice", timeout=10_000)
            await row.locator("a", has_text="Operate").click()
            await page.locator('a[data-op="stop"]').click()
            await expect(page.locator("#confirm")).to_contain_text("Alice")
            await page.locator("#confirm-button").click()
            await expect(page.locator(".messages")).to_contain_text("Accepted", timeout=15_000)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        assert ("RemoteStopTransaction", {"transactionId": tx}) in charger.received_calls
        # The charger ends the session, as a real one does after RemoteStop.
        await charger.call("StopTransaction", {"transactionId": tx, "meterStop": 7800, "reason": "Remote",
                                               "timestamp": "2026-03-01T21:00:00Z"})
        await page.goto(f"http://{HOST}:{web.port}/console/")
        finished = page.locator("#finished tr", has_text=cp_id)
        await expect(finished).to_contain_text("7.300")  # kWh: 7,800 - 500 Wh
        await expect(finished).to_contain_text("Alice")
        await expect(finished).to_contain_text("Remote")
        await expect(page.locator(f'tr[data-connector="{cp_id}#1"] [data-f="resident"]')).to_have_text("")
    await context.close()
