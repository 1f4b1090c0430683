"""Helpers for the OCPP tests that talk to the ASGI app through a WebsocketCommunicator."""

from __future__ import annotations

import time

from tests.ocpp.charger import FakeCharger


async def closed_within(charger: FakeCharger, seconds: float) -> dict:
    """The websocket.close the platform sent, skipping any frames before it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = await charger.transport.receive_output(timeout=max(deadline - time.monotonic(), 0.01))
        if output["type"] == "websocket.close":
            return output
    raise AssertionError(f"still open after {seconds} s")
