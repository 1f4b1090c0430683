from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from channels.testing import WebsocketCommunicator

from hoa_charging.asgi import application
from tests import factories
from tests.ocpp.charger import FakeCharger, basic_auth

PASSWORD = factories.CHARGER_PASSWORD


@pytest.fixture
def new_charger(world, committed) -> Callable[..., str]:
    """Make a committed charger with a unique id in maple-court (or another building)."""

    def make(condo=None, connectors: int = 2, prefix: str = "T") -> str:
        charge_point_id = f"{prefix}-{uuid.uuid4().hex[:10].upper()}"
        factories.charger(condo or world.maple, charge_point_id, PASSWORD, connectors=connectors)
        return charge_point_id

    return make


@pytest.fixture
def charger_id(new_charger) -> str:
    return new_charger()


def communicator(charge_point_id: str, password: str = PASSWORD, subprotocols=("ocpp1.6",), auth: bool = True,
                 username: str | None = None) -> WebsocketCommunicator:
    headers = [basic_auth(username or charge_point_id, password)] if auth else []
    comm = WebsocketCommunicator(application, f"/ocpp/{charge_point_id}", headers=headers,
                                 subprotocols=list(subprotocols))
    # A fresh address per connection, so that rate limits of earlier runs do not apply.
    comm.scope["client"] = (f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}", 40000)
    return comm


@pytest.fixture
async def connected(charger_id) -> AsyncIterator[FakeCharger]:
    comm = communicator(charger_id)
    ok, subprotocol = await comm.connect(timeout=5)
    assert ok and subprotocol == "ocpp1.6"
    charger = FakeCharger(comm)
    charger.charge_point_id = charger_id
    yield charger
    await comm.disconnect()
