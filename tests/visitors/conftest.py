"""Visitors end to end: a real consumer with a scripted charger (tests/ocpp), localstripe, a real SMTP server.

The visitor's browser is played by the Django test client (the page's JSON calls) and by localstripe's
confirm (what Stripe.js does with the card). Requests run in a thread of their own while the charger
answers in the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from apps.charging.models import Connector
from apps.core.tenants import in_schema
from apps.visitors import services
from tests.ocpp.conftest import charger_id, connected, new_charger
from tests.payments.conftest import localstripe, stripe_settings

MAPLE, OAK, HARBOR = "maple-court.localhost", "oak-tower.localhost", "harbor-view.localhost"


def a_client() -> Client:
    """A browser of its own address: the public pages' rate limits count per address."""
    return Client(REMOTE_ADDR=f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}")


def codes_of(schema: str, charge_point_id: str) -> dict[int, str]:
    """The connectors' visitor codes (made on first use, as the label sheet does)."""
    with in_schema(schema):
        services.visitor_codes_ensure()
        return {c.connector_id: c.visitor_code.code for c in
                Connector.objects.filter(charge_point__charge_point_id=charge_point_id).select_related("visitor_code")}


async def in_thread(fn, *args, **kwargs):
    return await sync_to_async(fn, thread_sensitive=False)(*args, **kwargs)


async def while_charger_answers(charger, fn, *args, **kwargs):
    """Run a blocking request while the charger answers the platform's calls."""
    pump = asyncio.ensure_future(charger.settle(20))
    try:
        return await in_thread(fn, *args, **kwargs)
    finally:
        pump.cancel()


def post(client: Client, path: str, data: dict | None = None, host: str = MAPLE):
    return client.post(path, json.dumps(data or {}), content_type="application/json", HTTP_HOST=host)


@dataclass
class Started:
    token: str
    intent_id: str
    code: str
    client: Client


def pay(localstripe, code: str, amount: str = "10.00", email: str | None = None) -> Started:
    """The visitor's form and Stripe.js: a visit authorized with pm_card_visa (not started yet)."""
    client = a_client()
    made = post(client, f"/v/{code}/visits", {"email": email or f"visitor-{uuid.uuid4().hex[:8]}@example.com",
                                              "amount": amount})
    assert made.status_code == 201, made.content
    body = made.json()
    intent_id = body["client_secret"].split("_secret_")[0]
    status, confirmed = localstripe.confirm_payment(intent_id, "pm_card_visa")
    assert status == 200 and confirmed["status"] == "requires_capture", confirmed
    return Started(body["visit"], intent_id, code, client)


@pytest.fixture
async def visitor_charger(connected):
    """A connected charger of Maple Court whose two connectors report Available."""
    await connected.boot()
    for number in (1, 2):
        await connected.call("StatusNotification", {"connectorId": number, "errorCode": "NoError",
                                                    "status": "Available"})
    return connected


@pytest.fixture
def stripe_ready(stripe_settings):
    return stripe_settings


__all__ = ["charger_id", "connected", "localstripe", "new_charger", "stripe_settings"]
