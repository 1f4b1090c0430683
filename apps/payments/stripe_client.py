"""Everything the platform says to Stripe, and the only module that imports the Stripe SDK.

Calls take and return our own types: amounts are integer minor units here (apps/payments/money.py does
the conversion from Decimal, exact or refused), results are frozen dataclasses, and Stripe's errors become
four exceptions the services understand:

    StripeUnavailable   the outcome is unknown (network, timeout, Stripe's own 5xx, rate limit): retry
                        with the same idempotency key, and Stripe performs the call once
    StripeDeclined      the card was declined (code, message, and the PaymentIntent when Stripe names it)
    StripeRefused       Stripe refused the request (bad parameters, a refund above what is left ...)
    WebhookSignatureInvalid  a webhook whose signature does not verify on its raw body

Every call that changes something at Stripe carries an idempotency key chosen by the caller and stored
with the row it belongs to, so a retry (ours, or the SDK's own network retries) never creates a second
object. Reads (retrieve, list) change nothing and carry none.

Metadata on every object we create names the building's schema and our ids (``hoa_schema``,
``hoa_payment`` ...): one Stripe account serves every building, and a webhook is routed by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import stripe
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# Stripe API version we are written against (the SDK's own; pinned with the SDK in requirements.lock).
API_VERSION = stripe.api_version


class StripeError(Exception):
    """Base of the errors below; ``message`` is safe to show to a manager."""

    def __init__(self, message: str, *, code: str = "", payment_intent_id: str = ""):
        super().__init__(message)
        self.message = message
        self.code = code
        self.payment_intent_id = payment_intent_id


class StripeUnavailable(StripeError):
    """The call may or may not have happened; retry it with the same idempotency key."""


class StripeDeclined(StripeError):
    """The card was declined."""


class StripeRefused(StripeError):
    """Stripe refused the request as made; retrying it unchanged will not help."""


class WebhookSignatureInvalid(Exception):
    """The webhook's Stripe-Signature does not verify on the raw body (or is too old)."""


class StripeNotConfigured(ImproperlyConfigured):
    pass


@dataclass(frozen=True)
class StripeConfig:
    secret_key: str
    publishable_key: str
    webhook_secret: str
    api_base: str
    max_network_retries: int
    webhook_tolerance: int

    @classmethod
    def from_settings(cls) -> StripeConfig:
        config = cls(
            secret_key=settings.STRIPE_SECRET_KEY,
            publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
            webhook_secret=settings.STRIPE_WEBHOOK_SECRET,
            api_base=settings.STRIPE_API_BASE,
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
            webhook_tolerance=settings.STRIPE_WEBHOOK_TOLERANCE,
        )
        config.validate()
        return config

    def validate(self) -> None:
        missing = [name for name, value in (("STRIPE_SECRET_KEY", self.secret_key),
                                            ("STRIPE_PUBLISHABLE_KEY", self.publishable_key),
                                            ("STRIPE_WEBHOOK_SECRET", self.webhook_secret)) if not value]
        if missing:
            raise StripeNotConfigured(
                f"payments are not configured: {', '.join(missing)} not set. In development `python3 dev.py demo` "
                "starts localstripe and sets them; see docs/payments.md")
        if not self.secret_key.startswith(("sk_", "rk_")):
            raise StripeNotConfigured("STRIPE_SECRET_KEY must start with sk_ or rk_")
        base = urlsplit(self.api_base)
        if base.scheme not in {"http", "https"} or not base.hostname:
            raise StripeNotConfigured(f"STRIPE_API_BASE must be http(s)://host[:port], not {self.api_base!r}")


# --- results ---------------------------------------------------------------------------------


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _id(value: Any) -> str:
    """An expandable field: an id, or the object itself."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _str(value.get("id"))


def _metadata(obj: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(obj.get("metadata") or {}).items()}


@dataclass(frozen=True)
class IntentResult:
    id: str
    status: str
    amount: int
    currency: str  # upper-case ISO code
    customer: str
    payment_method: str
    latest_charge: str
    client_secret: str
    metadata: dict[str, str] = field(default_factory=dict)
    failure_code: str = ""
    failure_message: str = ""

    @classmethod
    def of(cls, obj: Any) -> IntentResult:
        error = obj.get("last_payment_error") or {}
        return cls(
            id=obj["id"], status=_str(obj.get("status")), amount=int(obj["amount"]),
            currency=_str(obj.get("currency")).upper(), customer=_id(obj.get("customer")),
            payment_method=_id(obj.get("payment_method")), latest_charge=_id(obj.get("latest_charge")),
            client_secret=_str(obj.get("client_secret")), metadata=_metadata(obj),
            failure_code=_str(error.get("decline_code") or error.get("code")),
            failure_message=_str(error.get("message")),
        )


@dataclass(frozen=True)
class SetupIntentResult:
    id: str
    status: str
    customer: str
    payment_method: str
    client_secret: str
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> SetupIntentResult:
        return cls(id=obj["id"], status=_str(obj.get("status")), customer=_id(obj.get("customer")),
                   payment_method=_id(obj.get("payment_method")), client_secret=_str(obj.get("client_secret")),
                   metadata=_metadata(obj))


@dataclass(frozen=True)
class PaymentMethodResult:
    id: str
    customer: str
    type: str
    brand: str
    last4: str
    exp_month: int | None
    exp_year: int | None

    @classmethod
    def of(cls, obj: Any) -> PaymentMethodResult:
        card = obj.get("card") or {}
        return cls(id=obj["id"], customer=_id(obj.get("customer")), type=_str(obj.get("type")),
                   brand=_str(card.get("brand")), last4=_str(card.get("last4")),
                   exp_month=card.get("exp_month"), exp_year=card.get("exp_year"))


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str  # pending, requires_action, succeeded, failed, canceled
    amount: int
    currency: str
    charge: str
    payment_intent: str
    metadata: dict[str, str] = field(default_factory=dict)
    failure_reason: str = ""

    @classmethod
    def of(cls, obj: Any) -> RefundResult:
        return cls(id=obj["id"], status=_str(obj.get("status")), amount=int(obj["amount"]),
                   currency=_str(obj.get("currency")).upper(), charge=_id(obj.get("charge")),
                   payment_intent=_id(obj.get("payment_intent")), metadata=_metadata(obj),
                   failure_reason=_str(obj.get("failure_reason")))


@dataclass(frozen=True)
class ChargeResult:
    id: str
    status: str
    amount: int
    amount_refunded: int
    currency: str
    payment_intent: str
    disputed: bool
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, obj: Any) -> ChargeResult:
        return cls(id=obj["id"], status=_str(obj.get("status")), amount=int(obj["amount"]),
                   amount_refunded=int(obj.get("amount_refunded") or 0), currency=_str(obj.get("currency")).upper(),
                   payment_intent=_id(obj.get("payment_intent")), disputed=bool(obj.get("disputed")),
                   metadata=_metadata(obj))


@dataclass(frozen=True)
class DisputeResult:
    id: str
    status: str  # warning_needs_response ... needs_response, under_review, won, lost
    amount: int
    currency: str
    charge: str
    payment_intent: str
    reason: str

    @classmethod
    def of(cls, obj: Any) -> DisputeResult:
        return cls(id=obj["id"], status=_str(obj.get("status")), amount=int(obj["amount"]),
                   currency=_str(obj.get("currency")).upper(), charge=_id(obj.get("charge")),
                   payment_intent=_id(obj.get("payment_intent")), reason=_str(obj.get("reason")))


@dataclass(frozen=True)
class VerifiedEvent:
    """A webhook event whose signature verified. ``object`` is the event's snapshot: never trusted for state."""

    id: str
    type: str
    livemode: bool
    created: int
    object_type: str
    object_id: str
    object: dict[str, Any]
    payload: dict[str, Any]


# --- the client --------------------------------------------------------------------------------


def _translate(exc: stripe.StripeError) -> StripeError:
    error = getattr(exc, "error", None)
    code = _str(getattr(exc, "code", "") or "")
    intent = ""
    if error is not None:
        intent = _id(getattr(error, "payment_intent", None))
        code = _str(getattr(error, "decline_code", None) or code)
    message = _str(getattr(exc, "user_message", None) or str(exc))
    if isinstance(exc, stripe.CardError):
        return StripeDeclined(message, code=code or "card_declined", payment_intent_id=intent)
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError)):
        return StripeUnavailable(message, code=code)
    if isinstance(exc, stripe.APIError) or (getattr(exc, "http_status", None) or 0) >= 500:
        return StripeUnavailable(message, code=code)
    return StripeRefused(message, code=code, payment_intent_id=intent)


class StripeClient:
    def __init__(self, config: StripeConfig):
        config.validate()
        self.config = config
        self._client = stripe.StripeClient(
            config.secret_key,
            base_addresses={"api": config.api_base},
            max_network_retries=config.max_network_retries,
        )

    @property
    def publishable_key(self) -> str:
        return self.config.publishable_key

    def _call(self, fn: Any, *args: Any, idempotency_key: str | None = None, **params: Any) -> Any:
        options: dict[str, Any] = {}
        if idempotency_key is not None:
            if not idempotency_key or len(idempotency_key) > 255:
                raise ValueError(f"idempotency key must be 1 to 255 characters, not {idempotency_key!r}")
            options["idempotency_key"] = idempotency_key
        try:
            result = fn(*args, params={k: v for k, v in params.items() if v is not None} or None,
                        options=options or None)
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        # Plain data from here on: the SDK's objects never leave this module.
        return result.to_dict() if hasattr(result, "to_dict") else result

    # customers

    def customer_create(self, *, email: str, name: str, metadata: dict[str, str], idempotency_key: str) -> str:
        customer = self._call(self._client.v1.customers.create, idempotency_key=idempotency_key,
                              email=email or None, name=name or None, metadata=metadata)
        return str(customer["id"])

    # payment intents

    def payment_intent_create(
        self, *, amount: int, currency: str, customer: str, metadata: dict[str, str], idempotency_key: str,
        payment_method: str | None = None, off_session: bool = False,
    ) -> IntentResult:
        """A PaymentIntent for ``amount`` minor units. With ``off_session`` (autopay) it is confirmed at once
        with the saved ``payment_method``; otherwise the browser confirms it with its client secret."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"amount must be a positive integer of minor units, not {amount!r}")
        params: dict[str, Any] = {
            "amount": amount, "currency": currency.lower(), "customer": customer, "metadata": metadata,
            "payment_method_types": ["card"],
        }
        if off_session:
            if not payment_method:
                raise ValueError("an off-session payment needs the saved payment method")
            params.update(payment_method=payment_method, confirm=True, off_session=True)
        elif payment_method:
            params["payment_method"] = payment_method
        intent = self._call(self._client.v1.payment_intents.create, idempotency_key=idempotency_key, **params)
        return IntentResult.of(intent)

    def authorization_create(
        self, *, amount: int, currency: str, metadata: dict[str, str], idempotency_key: str,
    ) -> IntentResult:
        """A card pre-authorization: a PaymentIntent with manual capture, confirmed by the browser (Stripe.js).

        Once confirmed it is ``requires_capture``: the amount is held on the card until it is captured
        (``payment_intent_capture``, at most the amount) or released (``payment_intent_cancel``).
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"amount must be a positive integer of minor units, not {amount!r}")
        intent = self._call(self._client.v1.payment_intents.create, idempotency_key=idempotency_key,
                            amount=amount, currency=currency.lower(), metadata=metadata,
                            payment_method_types=["card"], capture_method="manual")
        return IntentResult.of(intent)

    def payment_intent_capture(self, intent_id: str, *, amount: int, idempotency_key: str) -> IntentResult:
        """Capture ``amount`` minor units of an authorization (1 to the amount held); Stripe releases the rest."""
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"amount must be a positive integer of minor units, not {amount!r}")
        intent = self._call(self._client.v1.payment_intents.capture, intent_id, idempotency_key=idempotency_key,
                            amount_to_capture=amount)
        return IntentResult.of(intent)

    def payment_intent_cancel(self, intent_id: str, *, idempotency_key: str) -> IntentResult:
        """Release an authorization (or abandon an intent never confirmed): nothing is charged."""
        intent = self._call(self._client.v1.payment_intents.cancel, intent_id, idempotency_key=idempotency_key)
        return IntentResult.of(intent)

    def payment_intent_retrieve(self, intent_id: str) -> IntentResult:
        return IntentResult.of(self._call(self._client.v1.payment_intents.retrieve, intent_id))

    # saving a card for autopay

    def setup_intent_create(
        self, *, customer: str, metadata: dict[str, str], idempotency_key: str
    ) -> SetupIntentResult:
        intent = self._call(self._client.v1.setup_intents.create, idempotency_key=idempotency_key,
                            customer=customer, usage="off_session", payment_method_types=["card"], metadata=metadata)
        return SetupIntentResult.of(intent)

    def setup_intent_retrieve(self, setup_intent_id: str) -> SetupIntentResult:
        return SetupIntentResult.of(self._call(self._client.v1.setup_intents.retrieve, setup_intent_id))

    def payment_method_retrieve(self, payment_method_id: str) -> PaymentMethodResult:
        return PaymentMethodResult.of(self._call(self._client.v1.payment_methods.retrieve, payment_method_id))

    def payment_method_attach(
        self, payment_method_id: str, *, customer: str, idempotency_key: str
    ) -> PaymentMethodResult:
        return PaymentMethodResult.of(self._call(self._client.v1.payment_methods.attach, payment_method_id,
                                                 idempotency_key=idempotency_key, customer=customer))

    # refunds, charges, disputes

    def refund_create(self, *, payment_intent: str, amount: int, metadata: dict[str, str],
                      idempotency_key: str) -> RefundResult:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"amount must be a positive integer of minor units, not {amount!r}")
        refund = self._call(self._client.v1.refunds.create, idempotency_key=idempotency_key,
                            payment_intent=payment_intent, amount=amount, metadata=metadata)
        return RefundResult.of(refund)

    def refunds_of(self, payment_intent: str) -> list[RefundResult]:
        page = self._call(self._client.v1.refunds.list, payment_intent=payment_intent, limit=100)
        return [RefundResult.of(refund) for refund in page["data"]]

    def charge_retrieve(self, charge_id: str) -> ChargeResult:
        return ChargeResult.of(self._call(self._client.v1.charges.retrieve, charge_id))

    def dispute_retrieve(self, dispute_id: str) -> DisputeResult:
        return DisputeResult.of(self._call(self._client.v1.disputes.retrieve, dispute_id))

    # webhooks

    def event_verify(self, payload: bytes, signature: str | None) -> VerifiedEvent:
        """Check the Stripe-Signature header on the raw body, then parse it. Nothing is trusted before this."""
        if not signature:
            raise WebhookSignatureInvalid("no Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, self.config.webhook_secret,
                                                  self.config.webhook_tolerance)
        except stripe.SignatureVerificationError as exc:
            raise WebhookSignatureInvalid(str(exc)) from None
        except (ValueError, IndexError, UnicodeDecodeError) as exc:  # a malformed header or body
            raise WebhookSignatureInvalid(f"malformed signature or body: {exc}") from None
        try:
            data = json.loads(payload)
            obj = data["data"]["object"]
            return VerifiedEvent(id=str(data["id"]), type=str(data["type"]), livemode=bool(data.get("livemode")),
                                 created=int(data.get("created") or 0), object_type=str(obj.get("object") or ""),
                                 object_id=str(obj.get("id") or ""), object=dict(obj), payload=data)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # Signed by Stripe yet not an event: keep it out, and say so in the answer's log line.
            raise WebhookSignatureInvalid(f"signed body is not a Stripe event: {exc}") from None


_clients: dict[StripeConfig, StripeClient] = {}


def get_client() -> StripeClient:
    """The client for the current settings (tests change them; each configuration gets its own client)."""
    config = StripeConfig.from_settings()
    client = _clients.get(config)
    if client is None:
        client = _clients[config] = StripeClient(config)
    return client
