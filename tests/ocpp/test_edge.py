"""The edge rules for what a charger sends (apps/ocpp/edge.py): pure, no database."""

from __future__ import annotations

import pytest

from apps.ocpp import edge


@pytest.mark.parametrize(("action", "payload", "expected"), [
    ("BootNotification", {"chargePointVendor": "a\x00b", "chargePointModel": "M"},
     (edge.PROPERTY, "chargePointVendor contains a NUL character")),
    ("BootNotification", {"chargePointVendor": "\ud800", "chargePointModel": "M"},
     (edge.PROPERTY, "chargePointVendor is not valid Unicode (an unpaired surrogate)")),
    ("StopTransaction", {"transactionId": 2**31, "meterStop": 1, "timestamp": "t"},
     (edge.TYPE, "transactionId is 2147483648, beyond OCPP's 32-bit integer")),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [{"value": "1\x00"}]}]},
     (edge.PROPERTY, "meterValue[0].sampledValue[0].value contains a NUL character")),
    ("StatusNotification", {"connectorId": -1, "errorCode": "NoError", "status": "Available"},
     (edge.PROPERTY, "connectorId is -1; connectors are numbered from 1 (0 is the charger)")),
    ("StatusNotification", {"connectorId": 32768, "errorCode": "NoError", "status": "Available"},
     (edge.PROPERTY, "connectorId is 32768; at most 999 connectors are supported")),
    ("StartTransaction", {"connectorId": 0, "idTag": "X", "meterStart": 0, "timestamp": "t"},
     (edge.PROPERTY, "connectorId is 0; a transaction runs on a connector, numbered from 1")),
])
def test_what_the_database_or_the_spec_refuses_is_named(action, payload, expected):
    assert edge.check(action, payload) == expected


@pytest.mark.parametrize(("action", "payload"), [
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"}),
    ("StopTransaction", {"transactionId": -1, "meterStop": 2**31 - 1, "timestamp": "t"}),
    ("StartTransaction", {"connectorId": 1, "idTag": "Ünïcode-ok", "meterStart": -(2**31), "timestamp": "t"}),
    ("Heartbeat", {}),
])
def test_good_values_pass(action, payload):
    assert edge.check(action, payload) is None


def test_token_bucket_allows_the_burst_then_the_rate():
    bucket = edge.TokenBucket(rate=2, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.4) is False and bucket.take(0.5) is True  # one token per half second
    assert bucket.take(100.0) and bucket.tokens == 2  # refilled to the burst, not beyond


def test_token_bucket_wait_spaces_events_at_the_rate():
    bucket = edge.TokenBucket(rate=10, burst=2, now=0.0)
    assert [bucket.wait(0.0) for _ in range(5)] == [0.0, 0.0, pytest.approx(0.1), pytest.approx(0.2),
                                                    pytest.approx(0.3)]
