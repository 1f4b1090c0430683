"""What is not the platform, in these tests: the resident's browser (Stripe.js confirming an intent), Stripe's
dashboard (disputes), and Stripe signing a webhook. Plain HTTP to localstripe and to daphne, no Stripe SDK."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs += _flatten(value, name)
        else:
            pairs.append((name, str(value)))
    return pairs


def http(method: str, url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 15) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class LocalStripe:
    url: str
    secret_key: str
    log_path: Path

    def call(self, method: str, path: str, data: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict]:
        body = urllib.parse.urlencode(_flatten(data or {})).encode() if method == "POST" else None
        url = self.url + path
        if method == "GET" and data:
            url += "?" + urllib.parse.urlencode(_flatten(data))
        status, raw = http(method, url, data=body, headers={
            "Authorization": f"Bearer {self.secret_key}", "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {})})
        return status, json.loads(raw or b"{}")

    def register_webhook(self, webhook_id: str, url: str, secret: str) -> None:
        status, _ = self.call("POST", f"/_config/webhooks/{webhook_id}", {"url": url, "secret": secret})
        assert status == 200

    # the resident's browser (Stripe.js)

    def confirm_payment(self, intent_id: str, payment_method: str = "pm_card_visa") -> tuple[int, dict]:
        status, body = self.call("POST", f"/v1/payment_intents/{intent_id}", {"payment_method": payment_method})
        assert status == 200, body
        return self.call("POST", f"/v1/payment_intents/{intent_id}/confirm")

    def confirm_setup(self, setup_intent_id: str, card_number: str) -> tuple[int, dict]:
        return self.call("POST", f"/v1/setup_intents/{setup_intent_id}/confirm", {"payment_method_data": {
            "type": "card", "card": {"number": card_number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}})

    # what Stripe holds

    def payment_intent(self, intent_id: str) -> dict:
        status, body = self.call("GET", f"/v1/payment_intents/{intent_id}")
        assert status == 200, body
        return body

    def payment_intents_of(self, schema: str, payment_id: int) -> list[dict]:
        """Every PaymentIntent at (local)Stripe made for one of our payments (by the metadata we send)."""
        found, after = [], None
        while True:
            status, page = self.call("GET", "/v1/payment_intents", {"limit": 100, **({"starting_after": after}
                                                                                      if after else {})})
            assert status == 200, page
            found += [pi for pi in page["data"] if pi["metadata"].get("hoa_schema") == schema
                      and pi["metadata"].get("hoa_payment") == str(payment_id)]
            if not page["has_more"]:
                return found
            after = page["data"][-1]["id"]

    def refunds_of(self, intent_id: str) -> list[dict]:
        status, page = self.call("GET", "/v1/refunds", {"payment_intent": intent_id, "limit": 100})
        assert status == 200, page
        return page["data"]

    # Stripe's side of a chargeback

    def open_dispute(self, charge_id: str, reason: str = "fraudulent") -> dict:
        status, body = self.call("POST", "/_test/disputes", {"charge": charge_id, "reason": reason})
        assert status == 200, body
        return body

    def update_dispute(self, dispute_id: str, status: str) -> dict:
        status_code, body = self.call("POST", f"/_test/disputes/{dispute_id}/update", {"status": status})
        assert status_code == 200, body
        return body

    def fail_refund(self, refund_id: str, reason: str = "expired_or_canceled_card") -> dict:
        status, body = self.call("POST", f"/_test/refunds/{refund_id}/fail", {"failure_reason": reason})
        assert status == 200, body
        return body

    def close_dispute(self, dispute_id: str, outcome: str) -> dict:
        status, body = self.call("POST", f"/_test/disputes/{dispute_id}/close", {"status": outcome})
        assert status == 200, body
        return body


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, computed as Stripe (and localstripe) do."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def event_payload(event_type: str, obj: dict, event_id: str | None = None) -> bytes:
    event_id = event_id or "evt_test_" + hashlib.sha1(str(time.time_ns()).encode()).hexdigest()[:16]
    return json.dumps({"id": event_id, "object": "event", "type": event_type, "created": int(time.time()),
                       "livemode": False, "api_version": "2017-08-15", "data": {"object": obj}}).encode()


def post_webhook(url: str, payload: bytes, signature: str | None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return http("POST", url, data=payload, headers=headers)
