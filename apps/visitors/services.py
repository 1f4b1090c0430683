"""Visitors pay by card on the connector's page; the platform starts, prices and settles their session.

    visit_create    the page's form: a PaymentIntent with manual capture (Stripe.js confirms it with the card)
    visit_start     after the browser's confirmation: the intent re-fetched from Stripe must hold our amount
                    (requires_capture); a one-time idTag for this connector, RemoteStartTransaction with it
    visit_stop      RemoteStopTransaction of the visit's own session
    visit_stopped   the charging app's stop hook: the visit is completed in the stopping transaction,
                    settled once the stop commits (a Celery task, and the sweep if the broker is down)
    visit_settle    price the session (billing's session_price, idempotent), capture the price (never more
                    than authorized: the rest is a shortfall for managers), release when 0, e-mail the receipt
    visits_sweep    the beat task's work: starts that never came, intents never confirmed, settlements and
                    receipts that failed or whose message was lost

Every Stripe call that changes something carries an idempotency key made of the schema and the visit's id, so
a retry (a worker retried, two stops at once, the sweep) performs it once; the visit's row lock orders them.
Call inside the building's schema unless the function takes a schema name.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone, translation

from apps.billing import pricing
from apps.billing.selectors import building_billing, pricing_tariff, tariff_for, version_in_force
from apps.billing.services import NoTariff, price_quote, session_price
from apps.charging.models import ChargingSession, Connector
from apps.charging.one_time_tags import one_time_tag_issue, one_time_tag_revoke
from apps.core.tenants import current_condominium, in_schema
from apps.ocpp import commands, live
from apps.ocpp.commands import Send, send_through_channel_layer
from apps.payments import money
from apps.payments.stripe_client import StripeError, StripeUnavailable, get_client
from apps.tenancy.models import Condominium
from apps.visitors import wording
from apps.visitors.models import Visit, VisitorCode

logger = logging.getLogger(__name__)

TYPICAL_SESSION_WH = 20_000  # the page's quote: a typical visitor's top-up
START_TIMEOUT = timedelta(minutes=5)  # RemoteStart accepted, no StartTransaction since: released
UNCONFIRMED_TIMEOUT = timedelta(minutes=30)  # an intent the browser never confirmed: cancelled
Status = Visit.Status


class VisitRefused(Exception):
    """Bad input or a state that does not allow it; the message is for the visitor (a 400)."""


class VisitUnavailable(Exception):
    """Stripe or the charger could not be reached; try again (a 503)."""


# --- codes and labels -------------------------------------------------------------------------------


def _new_code() -> str:
    return secrets.token_urlsafe(6).replace("-", "x").replace("_", "y").lower()[:8]


def visitor_codes_ensure(chargers: list[str] | None = None) -> list[VisitorCode]:
    """Every connector in service (of the chargers named, if any) gets its stable code (kept through
    re-commissioning); returned in label order."""
    rows = Connector.objects.filter(removed_at__isnull=True, charge_point__removed_at__isnull=True)
    if chargers:
        rows = rows.filter(charge_point__charge_point_id__in=chargers)
    connectors = list(rows.select_related("charge_point", "parking_spot", "visitor_code")
                      .order_by("charge_point__charge_point_id", "connector_id"))
    codes = []
    for connector in connectors:
        code = getattr(connector, "visitor_code", None)
        if code is None:
            code = VisitorCode.objects.create(connector=connector, code=_new_code())
        codes.append(code)
    return codes


def code_connector(code: str) -> VisitorCode | None:
    """The enabled code of a connector in service, or None (a 404: unknown here, or another building's)."""
    return (VisitorCode.objects.select_related("connector__charge_point", "connector__parking_spot")
            .filter(code=code, enabled=True, connector__removed_at__isnull=True,
                    connector__charge_point__removed_at__isnull=True).first())


def building_url(condo: Condominium, path: str) -> str:
    """``path`` on the building's own host, with the scheme and port the platform is served on (PUBLIC_URL)."""
    domain = condo.domains.order_by("-is_primary", "pk").values_list("domain", flat=True).first() or ""
    public = urlsplit(settings.PUBLIC_URL)
    port = f":{public.port}" if public.port else ""
    return f"{public.scheme}://{domain}{port}{path}"


def connector_label(connector: Connector) -> str:
    spot = connector.parking_spot.label if connector.parking_spot_id else ""
    name = f"{connector.charge_point.charge_point_id} #{connector.connector_id}"
    return f"{name} ({spot})" if spot else name


# --- the page ----------------------------------------------------------------------------------------


def tariff_words() -> dict[str, str]:
    gettext = translation.gettext
    return {
        "ENERGY": gettext("{price} per kWh"), "TIME": gettext("{price} per hour"),
        "PARKING_TIME": gettext("{price} per minute parked after charging"),
        "FLAT": gettext("{price} per session"), "step": gettext("in steps of {step}"),
        "grace": gettext("the first {minutes} min free"), "cap": gettext("at most {cap}"),
        "when": gettext("{text} ({window})"), "free": gettext("free"), "any time": gettext("at any time"),
    }


@dataclass(frozen=True)
class ConnectorPage:
    code: str
    label: str
    building: str
    available: bool
    status: str
    currency: str
    tariff_name: str
    tariff_lines: tuple[str, ...]
    typical_energy_wh: int
    typical_total: Decimal | None
    default_amount: Decimal
    min_amount: Decimal
    max_amount: Decimal


def amount_bounds(currency: str) -> tuple[Decimal, Decimal]:
    """The least and most a visitor may pre-authorize, in the currency's units."""
    scale = Decimal(100) if money.currency_exponent(currency) == 0 else Decimal(1)
    return Decimal(5) * scale, Decimal(150) * scale


def visitor_tariff_lines(connector: Connector, at: datetime | None = None) -> tuple[str, tuple[str, ...]]:
    choice = tariff_for(connector_pk=connector.pk, resident_id=None, as_resident=False)
    version = version_in_force(choice.tariff, at or timezone.now()) if choice is not None else None
    if choice is None or version is None:
        return "", ()
    try:
        return choice.tariff.name, wording.describe(pricing_tariff(version), tariff_words())
    except pricing.TariffInvalid as error:
        # Stored past the services' checks: the label still prints, and says so; the manager is told.
        logger.error("visitor tariff %s of connector %s cannot be read: %s", version, connector.pk, error)
        return choice.tariff.name, (translation.gettext("prices unavailable: ask the building's manager"),)


def connector_page(code: VisitorCode, *, now: datetime | None = None) -> ConnectorPage:
    connector = code.connector
    currency = building_billing().currency
    state = live.read_sync(connector.charge_point.charge_point_id)
    status = state.get(f"status:{connector.connector_id}", "") or connector.status
    connected = live.connected_to(state, connection.schema_name)
    available = connected and status in ("Available", "Preparing")
    name, lines = visitor_tariff_lines(connector, now)
    low, high = amount_bounds(currency)
    typical = None
    with contextlib.suppress(NoTariff):
        typical = price_quote(connector=connector, resident_id=None, energy_wh=TYPICAL_SESSION_WH, start=now,
                              as_resident=False).priced.total
    default = low
    if typical is not None:
        # Half again the typical session, in whole units, within the bounds.
        default = min(high, max(low, (typical * Decimal("1.5")).quantize(Decimal(1), rounding=ROUND_CEILING)))
    return ConnectorPage(code.code, connector_label(connector), current_condominium().name, available,
                         status if connected else "Offline", currency, name, lines, TYPICAL_SESSION_WH, typical,
                         default, low, high)


# --- paying and starting --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartedVisit:
    visit: Visit
    client_secret: str
    publishable_key: str


def _key(visit: Visit, what: str) -> str:
    return f"visit-{connection.schema_name}-{visit.pk}-{what}"


def _metadata(visit: Visit) -> dict[str, str]:
    return {"hoa_schema": connection.schema_name, "hoa_visit": str(visit.pk), "hoa_purpose": "visitor"}


def visit_create(*, code: VisitorCode, email: str, amount: Decimal, address: str | None = None,
                 now: datetime | None = None) -> StartedVisit:
    """The visitor's pre-authorization: a Visit and its PaymentIntent (manual capture) for Stripe.js to confirm."""
    now = now or timezone.now()
    page = connector_page(code, now=now)
    if not page.tariff_lines:
        raise VisitRefused("this connector takes no visitors: no visitor tariff applies here")
    if not page.available:
        raise VisitRefused(f"this connector is not available now ({page.status or 'unknown'})")
    if not page.min_amount <= amount <= page.max_amount:
        raise VisitRefused(f"amount must be from {page.min_amount} to {page.max_amount} {page.currency}")
    try:
        minor = money.to_minor_units(amount, page.currency)
    except money.MoneyError as exc:
        raise VisitRefused(f"amount: {exc}") from None
    condo = current_condominium()
    visit = Visit.objects.create(
        code=code, connector=code.connector, token=secrets.token_urlsafe(24), email=email,
        language=(condo.locale or "en")[:2], currency=page.currency, quote_total=page.typical_total,
        quote_energy_wh=page.typical_energy_wh, authorized_amount=amount, client_address=address,
    )
    client = get_client()
    try:
        intent = client.authorization_create(amount=minor, currency=page.currency, metadata=_metadata(visit),
                                             idempotency_key=_key(visit, "authorize"))
    except StripeUnavailable as exc:
        Visit.objects.filter(pk=visit.pk).update(status=Status.FAILED, note=f"Stripe unavailable: {exc.message}")
        raise VisitUnavailable("the card service cannot be reached; nothing was charged, try again") from None
    except StripeError as exc:
        Visit.objects.filter(pk=visit.pk).update(status=Status.FAILED, note=f"Stripe refused: {exc.message}")
        raise VisitRefused(f"the card service refused: {exc.message}") from None
    Visit.objects.filter(pk=visit.pk).update(payment_intent_id=intent.id)
    visit.payment_intent_id = intent.id
    return StartedVisit(visit, intent.client_secret, client.publishable_key)


def visit_start(schema_name: str, *, visit_pk: int, send: Send = send_through_channel_layer,
                now: datetime | None = None) -> Visit:
    """The browser confirmed the card: check the hold at Stripe, then start the charger with a one-time tag.

    Runs outside any transaction (it waits for the charger). The claim authorized -> starting is a
    conditional UPDATE, so two calls send one RemoteStartTransaction. A refusal (or no charger) releases
    the authorization at once and tells the visitor by e-mail that nothing was charged.
    """
    now = now or timezone.now()
    with in_schema(schema_name):
        visit = Visit.objects.select_related("connector__charge_point").get(pk=visit_pk)
        if visit.status == Status.CREATED:
            _check_hold(visit, now)
        if not Visit.objects.filter(pk=visit.pk, status=Status.AUTHORIZED).update(
                status=Status.STARTING, start_requested_at=now):
            return Visit.objects.get(pk=visit.pk)  # already started (or ended): nothing more to do
        connector = visit.connector
        tag = one_time_tag_issue(charge_point_pk=connector.charge_point_id, connector_number=connector.connector_id,
                                 expires_at=now + START_TIMEOUT)
        Visit.objects.filter(pk=visit.pk).update(id_tag=tag.id_tag)
        charge_point_id = connector.charge_point.charge_point_id
    payload = {"connectorId": connector.connector_id, "idTag": tag.id_tag}
    try:
        answer = str(send(schema_name, charge_point_id, "RemoteStartTransaction", payload).get("status", ""))
    except commands.CommandTimeout:
        answer = "NoAnswer"
    except commands.ChargerNotConnected:
        answer = "NotConnected"
    except commands.CommandRejected as error:
        answer = error.error_code or "Rejected"
    with in_schema(schema_name):
        Visit.objects.filter(pk=visit.pk).update(charger_answer=answer[:32])
        if answer != "Accepted":
            one_time_tag_revoke(id_tag=tag.id_tag)
            _release(Visit.objects.get(pk=visit.pk), note=f"the charger did not start: {answer}",
                     only_from=(Status.STARTING,))
        return Visit.objects.get(pk=visit.pk)


def _check_hold(visit: Visit, now: datetime) -> None:
    """CREATED -> AUTHORIZED once Stripe (asked again, never the browser) holds exactly our amount."""
    if not visit.payment_intent_id:
        raise VisitRefused("this visit has no card authorization")
    try:
        intent = get_client().payment_intent_retrieve(visit.payment_intent_id)
    except StripeUnavailable:
        raise VisitUnavailable("the card service cannot be reached; try again") from None
    expected = money.to_minor_units(visit.authorized_amount, visit.currency)
    if intent.status != "requires_capture":
        raise VisitRefused(f"the card is not authorized yet (the payment is {intent.status})")
    if intent.amount != expected or intent.currency != visit.currency.upper() or \
            intent.metadata.get("hoa_visit") != str(visit.pk) or intent.metadata.get("hoa_schema") != \
            connection.schema_name:
        raise VisitRefused("the card authorization does not match this visit")
    brand = last4 = ""
    if intent.payment_method:
        try:
            card = get_client().payment_method_retrieve(intent.payment_method)
            brand, last4 = card.brand, card.last4
        except StripeError:
            pass  # only the receipt's wording
    Visit.objects.filter(pk=visit.pk, status=Status.CREATED).update(
        status=Status.AUTHORIZED, authorized_at=now, card_brand=brand[:32], card_last4=last4[:4])


def visit_stop(schema_name: str, *, visit_pk: int, send: Send = send_through_channel_layer) -> str:
    """RemoteStopTransaction for the visit's own session; the charger's answer."""
    with in_schema(schema_name):
        visit = Visit.objects.select_related("connector__charge_point", "session").get(pk=visit_pk)
        session = visit.session or _session_of(visit)
        if session is None or session.stopped_at is not None or session.transaction_id is None:
            raise VisitRefused("this visit has no session charging now")
        charge_point_id = visit.connector.charge_point.charge_point_id
    try:
        return str(send(schema_name, charge_point_id, "RemoteStopTransaction",
                        {"transactionId": session.transaction_id}).get("status", ""))
    except commands.ChargerNotConnected:
        raise VisitUnavailable("the charger is not connected; stop it at the charger") from None
    except commands.CommandError as exc:
        raise VisitUnavailable(f"the charger did not stop: {exc}") from None


def _session_of(visit: Visit) -> ChargingSession | None:
    if not visit.id_tag:
        return None
    return (ChargingSession.objects.filter(id_tag=visit.id_tag, connector_id=visit.connector_id)
            .order_by("-pk").first())


# --- what the page polls ----------------------------------------------------------------------------------


def visit_progress(visit: Visit, *, now: datetime | None = None) -> dict:
    """Status, kWh and cost so far (or the final figures), for the visitor's page."""
    now = now or timezone.now()
    _follow_session(visit)
    visit.refresh_from_db()
    quantum = money.quantum(visit.currency)
    data: dict = {"status": visit.status, "currency": visit.currency,
                  "authorized": str(visit.authorized_amount.quantize(quantum)), "energy_kwh": None, "cost": None,
                  "captured": None, "can_stop": False}
    session = visit.session
    if session is not None and session.stopped_at is None:
        state = live.read_sync(visit.connector.charge_point.charge_point_id)
        raw = state.get(f"session_energy_wh:{session.connector_number}") or "0"
        energy_wh = int(raw) if raw.isdigit() else 0
        data["energy_kwh"] = str(Decimal(energy_wh) / 1000)
        started = session.started_at or now
        try:
            quote = price_quote(connector=visit.connector, resident_id=None, energy_wh=max(energy_wh, 1),
                                start=started, duration=max(now - started, timedelta(minutes=1)), as_resident=False)
            data["cost"] = str(quote.priced.total)
        except NoTariff:
            pass
        data["can_stop"] = True
    elif session is not None:
        data["energy_kwh"] = str(Decimal(session.energy_wh) / 1000)
        if visit.price_total is not None:
            data["cost"] = str(visit.price_total.quantize(quantum))
    if visit.captured_amount is not None:
        data["captured"] = str(visit.captured_amount.quantize(quantum))
    return data


def _follow_session(visit: Visit) -> None:
    """STARTING -> CHARGING once the charger's StartTransaction with the visit's tag is stored."""
    if visit.status != Status.STARTING:
        return
    session = _session_of(visit)
    if session is not None:
        Visit.objects.filter(pk=visit.pk, status=Status.STARTING).update(
            status=Status.CHARGING, session=session, started_at=session.started_at)


# --- the stop and the settlement -------------------------------------------------------------------------


def visit_stopped(session_pk: int) -> None:
    """The stop hook (apps/visitors/apps.py), inside the stopping transaction: a visitor's session completes its
    visit here, and the settlement is queued once the stop commits. Other sessions cost one indexed query."""
    session = ChargingSession.objects.filter(pk=session_pk).only("id_tag", "connector_id", "stopped_at").first()
    if session is None or not session.id_tag.startswith("V"):
        return
    visit = Visit.objects.filter(id_tag=session.id_tag, connector_id=session.connector_id).first()
    if visit is None:
        return
    Visit.objects.filter(pk=visit.pk, status__in=(Status.STARTING, Status.CHARGING)).update(
        status=Status.COMPLETED, session=session, stopped_at=session.stopped_at)
    schema = connection.schema_name
    transaction.on_commit(lambda: _queue_settle(schema, visit.pk), robust=True)


def _queue_settle(schema: str, visit_pk: int) -> None:
    from apps.visitors import tasks

    try:
        tasks.settle_visit.delay(schema, visit_pk)
    except Exception:  # the broker is down: the sweep settles it
        logger.exception("visit %s in %s: settlement not queued; the sweep will settle it", visit_pk, schema)


def visit_settle(*, visit_pk: int, now: datetime | None = None) -> Visit:
    """Price, capture (or release) and send the receipt, once, however often it is called.

    The visit's row is locked for the whole settlement: a second call (a worker retry, a duplicated stop,
    the sweep) waits, then finds it settled. The capture's idempotency key is fixed per visit, so even a
    settlement whose answer was lost captures once when retried.
    """
    now = now or timezone.now()
    with transaction.atomic():
        visit = Visit.objects.select_for_update(of=("self",)).select_related("session").get(pk=visit_pk)
        if visit.status == Status.CHARGING and visit.session is not None and visit.session.stopped_at is not None:
            visit.status = Status.COMPLETED  # a stop announced while the hook's message was lost
            visit.stopped_at = visit.session.stopped_at
        if visit.status != Status.COMPLETED or visit.session is None:
            return _receipt_if_due(visit, now)
        charge = session_price(session_pk=visit.session.pk, now=now)
        if charge is None or charge.status != pricing.PRICED:
            reason = charge.hold_reason if charge is not None else "the session could not be priced"
            Visit.objects.filter(pk=visit.pk).update(note=f"pricing held: {reason}"[:500])
            logger.warning("visit %s: pricing held (%s); left for a manager", visit.pk, reason)
            return Visit.objects.get(pk=visit.pk)
        price = charge.total
        capture = min(price, visit.authorized_amount)
        visit.price_total = price
        visit.shortfall = price - capture
        client = get_client()
        try:
            if capture > 0:
                client.payment_intent_capture(visit.payment_intent_id,
                                              amount=money.to_minor_units(capture, visit.currency),
                                              idempotency_key=_key(visit, "capture"))
                visit.status = Status.CAPTURED
            else:
                client.payment_intent_cancel(visit.payment_intent_id, idempotency_key=_key(visit, "cancel"))
                visit.status = Status.CANCELLED
        except StripeUnavailable as exc:
            logger.warning("visit %s: capture not done (%s); retried by the sweep", visit.pk, exc.message)
            raise
        except StripeError as exc:
            visit.status = Status.FAILED
            visit.note = f"capture refused by Stripe: {exc.message}"[:500]
            capture = Decimal(0)
        visit.captured_amount = capture
        visit.settled_at = now
        if visit.shortfall > 0:
            logger.warning("visit %s: priced %s, authorized %s: shortfall %s", visit.pk, price,
                           visit.authorized_amount, visit.shortfall)
        visit.save()
        return _receipt_if_due(visit, now)


def _receipt_if_due(visit: Visit, now: datetime) -> Visit:
    """Inside the visit's row lock: the e-mail goes once (marked in the same transaction as it is sent)."""
    if visit.receipt_sent_at is not None or visit.status not in (Status.CAPTURED, Status.CANCELLED):
        return visit
    _send_receipt(visit)
    Visit.objects.filter(pk=visit.pk).update(receipt_sent_at=now)
    visit.receipt_sent_at = now
    return visit


def _release(visit: Visit, *, note: str, only_from: tuple[str, ...]) -> bool:
    """Cancel the authorization (nothing charged) and tell the visitor, once."""
    with transaction.atomic():
        visit = Visit.objects.select_for_update().get(pk=visit.pk)
        if visit.status not in only_from:
            return False
        if visit.payment_intent_id:
            try:
                get_client().payment_intent_cancel(visit.payment_intent_id, idempotency_key=_key(visit, "cancel"))
            except StripeUnavailable as exc:
                logger.warning("visit %s: release not done (%s); the sweep retries", visit.pk, exc.message)
                return False
            except StripeError as exc:
                note += f"; Stripe: {exc.message}"
        visit.status = Status.CANCELLED
        visit.captured_amount = Decimal(0)
        visit.note = note[:500]
        visit.settled_at = timezone.now()
        visit.save()
        if visit.authorized_at is not None:
            _receipt_if_due(visit, visit.settled_at)
        else:
            Visit.objects.filter(pk=visit.pk).update(receipt_sent_at=visit.settled_at)  # never confirmed: no mail
        return True


def _send_receipt(visit: Visit) -> None:
    condo = current_condominium()
    session = visit.session
    charge = getattr(session, "charge", None) if session is not None else None
    quantum = money.quantum(visit.currency)
    zone = building_billing().timezone
    duration = None
    if session is not None and session.started_at and session.stopped_at:
        duration = int((session.stopped_at - session.started_at).total_seconds() // 60)
    context = {
        "building": condo.name, "visit": visit, "connector": connector_label(visit.connector),
        "energy_kwh": (Decimal(session.energy_wh) / 1000).quantize(Decimal("0.001")) if session is not None else None,
        "currency": visit.currency,
        "minutes": duration,
        # Formatted here: the template's date filter would show it in the server's zone, not the building's.
        "started": f"{session.started_at.astimezone(zone):%Y-%m-%d %H:%M %Z}" if session is not None and
        session.started_at else None,
        "lines": list(charge.lines) if charge is not None else [],
        "price": visit.price_total.quantize(quantum) if visit.price_total is not None else None,
        "captured": (visit.captured_amount or Decimal(0)).quantize(quantum),
        "authorized": visit.authorized_amount.quantize(quantum),
        "shortfall": visit.shortfall.quantize(quantum) if visit.shortfall else None,
    }
    with translation.override(visit.language):
        template = "visitors/receipt_email.txt" if visit.status == Status.CAPTURED else "visitors/released_email.txt"
        subject = (translation.gettext("Your charging receipt, %(building)s") if visit.status == Status.CAPTURED
                   else translation.gettext("Nothing was charged, %(building)s")) % {"building": condo.name}
        body = render_to_string(template, context)
    EmailMessage(subject, body, to=[visit.email], headers={"Content-Language": visit.language}).send()


# --- the sweep ---------------------------------------------------------------------------------------------


def visits_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Visits stuck in any state: released, settled or their receipt sent. Safe to run at any time, twice."""
    now = now or timezone.now()
    done = {"released": 0, "settled": 0, "abandoned": 0}
    for visit in Visit.objects.filter(status=Status.STARTING, start_requested_at__lt=now - START_TIMEOUT):
        _follow_session(visit)
        if Visit.objects.filter(pk=visit.pk, status=Status.STARTING).exists():
            one_time_tag_revoke(id_tag=visit.id_tag, at=now)
            if _release(visit, note="the car did not start charging in time", only_from=(Status.STARTING,)):
                done["released"] += 1
    for visit in Visit.objects.filter(status=Status.AUTHORIZED, authorized_at__lt=now - START_TIMEOUT):
        if _release(visit, note="the charger was never started", only_from=(Status.AUTHORIZED,)):
            done["released"] += 1
    for visit in Visit.objects.filter(status=Status.CREATED, created_at__lt=now - UNCONFIRMED_TIMEOUT):
        if _release(visit, note="the card was never confirmed", only_from=(Status.CREATED,)):
            done["abandoned"] += 1
    stopped = Visit.objects.filter(status=Status.CHARGING, session__stopped_at__isnull=False)
    pending = Visit.objects.filter(status=Status.COMPLETED) | stopped
    unsent = Visit.objects.filter(status__in=(Status.CAPTURED, Status.CANCELLED), receipt_sent_at__isnull=True)
    for visit in list(pending) + list(unsent):
        try:
            visit_settle(visit_pk=visit.pk, now=now)
            done["settled"] += 1
        except Exception:
            logger.exception("visit %s: settlement failed; next sweep", visit.pk)
    return done


# --- what managers read ------------------------------------------------------------------------------------


def visits_recent(*, limit: int = 200) -> list[dict]:
    """The latest visits as plain data (no token, no e-mail domain hidden: managers see who to contact)."""
    rows = []
    for visit in (Visit.objects.select_related("connector__charge_point", "session").order_by("-created_at")[:limit]):
        quantum = money.quantum(visit.currency)

        def amount(value: Decimal | None, quantum: Decimal = quantum) -> str | None:
            return None if value is None else str(value.quantize(quantum))

        rows.append({
            "id": visit.pk, "connector": connector_label(visit.connector), "status": visit.status,
            "email": visit.email, "created_at": visit.created_at.isoformat(), "currency": visit.currency,
            "authorized": amount(visit.authorized_amount), "price": amount(visit.price_total),
            "captured": amount(visit.captured_amount), "shortfall": amount(visit.shortfall),
            "energy_wh": visit.session.energy_wh if visit.session is not None else None,
            "charger_answer": visit.charger_answer, "note": visit.note,
            "needs_attention": bool(visit.shortfall) or visit.status == Status.FAILED or (
                visit.status == Status.COMPLETED and visit.note.startswith("pricing held")),
        })
    return rows
