"""Who is knocking: the decision on an OCPP websocket handshake, in one function.

    decision = await handshake.check(scope)   # Accepted(...) or Refused(reason)

The consumer only acts on the decision. In order:
1. the chargePointId must be one the platform could have registered (printable, 1-64 characters);
2. the subprotocol must be ocpp1.6;
3. the registration (public schema);
4. too many failed passwords lately, for this chargePointId or from this address: refused before any
   hashing, for a time that doubles with every further failure (counted in Redis, shared by every process);
5. the Basic-auth password, remembered in Redis once verified so that a reconnect storm skips PBKDF2.
   An unknown chargePointId costs the same as a known one (the same lookups, a password checked against a
   dummy hash of the same cost), so timing does not tell which ids exist.

Every refusal is recorded for the managers (``record_refusal``), at most one row per id, address, reason
and window and at most MAX_ROWS_PER_ADDRESS rows per address and window, whatever the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.core.cache import cache as django_cache
from django.db.models import F, Value
from django.db.models.functions import Lower
from django.utils import timezone
from django_tenants.utils import get_public_schema_name

from apps.core.compiled import CompiledValues
from apps.core.failures import FailureCounter
from apps.core.tenants import in_public_schema
from apps.ocpp import database, live
from apps.tenancy.hashers import ChargerPasswordHasher
from apps.tenancy.models import ChargerRegistration, ConnectionAttempt, Domain

logger = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
# Rows written per remote address and window, whatever the reason: a scan from one address must not
# fill the table.
MAX_ROWS_PER_ADDRESS = 20
MAX_ID_LENGTH = 64  # ChargerRegistration.charge_point_id
# Shorter charger passwords are accepted (chargers already installed) but shown as weak to the managers.
MIN_PASSWORD_LENGTH = 16


@dataclass(frozen=True)
class Registration:
    charge_point_id: str  # as registered (the URL may differ in case)
    condominium_id: int
    schema_name: str
    password_hash: str
    password_weak: bool | None


@dataclass(frozen=True)
class Accepted:
    registration: Registration
    remote: str


@dataclass(frozen=True)
class Refused:
    reason: str


def client_address(scope: dict) -> str:
    client = scope.get("client") or ("", 0)
    return str(client[0] or "")


def valid_charge_point_id(charge_point_id: str) -> bool:
    return 0 < len(charge_point_id) <= MAX_ID_LENGTH and charge_point_id.isprintable() and "\\" not in charge_point_id


async def check(scope: dict) -> Accepted | Refused:
    """Accept the handshake, or refuse it with a reason (recorded for the managers)."""
    charge_point_id = str(scope.get("url_route", {}).get("kwargs", {}).get("charge_point_id", ""))
    remote = client_address(scope)
    headers = scope.get("headers", [])
    decision = await _decide(scope, charge_point_id, remote, headers)
    if isinstance(decision, Refused):
        await database.run(record_refusal)(
            charge_point_id=charge_point_id or scope.get("path", ""), remote_address=remote, reason=decision.reason,
            headers=headers,
        )
    return decision


async def _decide(scope: dict, charge_point_id: str, remote: str, headers: list) -> Accepted | Refused:
    if not valid_charge_point_id(charge_point_id):
        return Refused("bad-charger-id")
    if SUBPROTOCOL not in scope.get("subprotocols", []):
        return Refused("no-ocpp1.6-subprotocol")
    credentials = parse_basic_auth(headers)
    registration = await database.run_on_shared_tables(find_registration)(charge_point_id)
    password = credentials[1] if credentials else ""
    # An unknown id goes through the same steps against a dummy registration: the same Redis lookup, the
    # same PBKDF2 cost, so that timing does not tell which ids exist.
    candidate = registration or Registration(charge_point_id, 0, "", dummy_hash(), None)
    # One Redis round trip: locked out? verified lately (by any process: no PBKDF2)? failures to clear?
    locked, matches, failed_before = await failures.look_up(charge_point_id, remote, verified.key(candidate, password))
    if locked:
        return Refused("too-many-failures")
    if credentials is None:
        return Refused("missing-credentials" if registration else "unknown-charger")
    username = credentials[0]
    if not matches:
        # PBKDF2 releases the GIL: run it off the database thread so a burst does not queue behind it.
        matches = await sync_to_async(password_matches, thread_sensitive=False)(password, candidate.password_hash)
        if matches and registration is not None:
            await verified.remember(registration, password)
    if registration is None:
        await failures.record(charge_point_id, remote)
        return Refused("unknown-charger")
    if username.lower() != registration.charge_point_id.lower() or not matches:
        await failures.record(charge_point_id, remote)
        return Refused("wrong-credentials")
    if failed_before:
        await failures.clear(charge_point_id)
    weak = len(password) < MIN_PASSWORD_LENGTH
    if weak != registration.password_weak:
        await database.run(registration_mark_weak)(registration.charge_point_id, weak)
    return Accepted(registration, remote)


def parse_basic_auth(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    raw = dict(headers).get(b"authorization", b"")
    scheme, _, encoded = raw.partition(b" ")
    if scheme.lower() != b"basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


# lower() = lower(): what the unique index is built on, so the lookup uses it (``iexact`` compares upper() and
# read every registration of every building at every handshake). Compiled once per process (apps/core/compiled.py).
_REGISTRATION = CompiledValues(lambda charge_point_id: (
    ChargerRegistration.objects.alias(id_ci=Lower("charge_point_id")).filter(id_ci=Lower(Value(charge_point_id)))
    .order_by("pk").values("charge_point_id", "condominium_id", "condominium__schema_name", "password_hash",
                           "password_weak")[:1]))


def find_registration(charge_point_id: str) -> Registration | None:
    """The registration of a chargePointId, case-insensitively; None when there is none.

    In any schema: the registrations and the buildings exist only in the public schema, which is on every
    building's search path (the handshake runs it wherever its thread's connection is, with no switch).
    """
    reg = _REGISTRATION.first(charge_point_id)
    if reg is None:
        return None
    return Registration(reg["charge_point_id"], reg["condominium_id"], reg["condominium__schema_name"],
                        reg["password_hash"], reg["password_weak"])


def registration_mark_weak(charge_point_id: str, weak: bool) -> None:
    """What the charger's password turned out to be at its last handshake (the platform keeps only a hash)."""
    with in_public_schema():
        ChargerRegistration.objects.filter(charge_point_id=charge_point_id).update(password_weak=weak)


@cache
def dummy_hash() -> str:
    """A hash of the chargers' algorithm and cost that no password matches in practice."""
    return make_password("no charger has this password", hasher=ChargerPasswordHasher.algorithm)


def password_matches(password: str, password_hash: str) -> bool:
    return check_password(password, password_hash)


def condominium_for_host(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The condominium whose own domain the charger connected through (Host header), if any.

    Lets an unknown charger's attempt show on that building's page: an installer who typed the
    building's address but a wrong id is the usual case.
    """
    raw = dict(headers).get(b"host", b"").decode("latin-1").strip().lower()
    host = raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw  # no port; IPv6 literals have many colons
    host = host.rstrip(".")
    if not host or not host.isprintable():
        return None
    with in_public_schema():
        return (Domain.objects.filter(domain__iexact=host).exclude(tenant__schema_name=get_public_schema_name())
                .values_list("tenant_id", flat=True).first())


def printable(text: str) -> str:
    """An id as it can be stored and shown: escapes for what is not printable (a NUL, say), at most 64."""
    return text.encode("unicode_escape").decode("ascii")[:MAX_ID_LENGTH]


def record_refusal(*, charge_point_id: str, remote_address: str, reason: str, headers: list | None = None) -> None:
    """Keep a refused handshake for the managers to see, at most one row per window and reason.

    The building is the registration's, else the one whose own host name the charger used. The same
    queries run for every reason, so the time the refusal takes does not tell whether the id exists.
    """
    window = settings.OCPP_REFUSED_LOG_WINDOW
    now = timezone.now()
    charge_point_id = printable(charge_point_id)
    remote_address = printable(remote_address)
    with in_public_schema():
        registered = (ChargerRegistration.objects.filter(charge_point_id__iexact=charge_point_id)
                      .values_list("condominium_id", flat=True).first())
        on_host = condominium_for_host(headers or [])
        condominium_id = registered or on_host
        first_in_window = django_cache.add(f"ocpp-refused:{charge_point_id}:{remote_address}:{reason}", 1,
                                           timeout=window)
        if not first_in_window:
            latest = (
                ConnectionAttempt.objects.filter(
                    charge_point_id=charge_point_id, remote_address=remote_address, reason=reason
                ).order_by("-last_at").values_list("pk", flat=True).first()
            )
            if latest is not None:
                ConnectionAttempt.objects.filter(pk=latest).update(attempts=F("attempts") + 1, last_at=now)
            return
        rows_key = f"ocpp-refused-rows:{remote_address}"
        django_cache.add(rows_key, 0, timeout=window)
        if django_cache.incr(rows_key) > MAX_ROWS_PER_ADDRESS:
            return
        ConnectionAttempt.objects.create(
            charge_point_id=charge_point_id, remote_address=remote_address, reason=reason,
            condominium_id=condominium_id, first_at=now, last_at=now,
        )
    logger.warning("refused OCPP connection for %r from %s: %s", charge_point_id, remote_address, reason)


def purge_refusals(*, older_than_days: int) -> int:
    with in_public_schema():
        cutoff = timezone.now() - timedelta(days=older_than_days)
        return ConnectionAttempt.objects.filter(last_at__lt=cutoff).delete()[0]


class FailedPasswords(FailureCounter):
    """Failed charger passwords counted in Redis per chargePointId and per remote address.

    Past ``per_id`` failures for an id (or ``per_address`` from an address: a building's chargers may
    share one), handshakes are refused without hashing for a back-off that doubles with each failure,
    from a minute up to an hour. Counts are forgotten after an hour without failures; a right password
    clears the id's count. The counting is apps/core/failures.py's, shared with the site meters' tokens.
    """

    def __init__(self) -> None:
        super().__init__("ocpp", lambda: {"id": settings.OCPP_AUTH_FAILURES_PER_ID,
                                          "address": settings.OCPP_AUTH_FAILURES_PER_ADDRESS},
                         label="OCPP password")

    async def look_up(self, charge_point_id: str, remote: str, verified_key: str) -> tuple[bool, bool, bool]:
        """(locked out, ``verified_key`` present, failures counted for the id) in one round trip."""
        count_key, lock_key = self._keys("id", charge_point_id)
        values = await live.client().mget([lock_key, self._keys("address", remote)[1], verified_key, count_key])
        return bool(values[0] or values[1]), bool(values[2]), bool(values[3])

    async def record(self, charge_point_id: str, remote: str) -> None:  # type: ignore[override]
        await super().record(id=charge_point_id, address=remote)

    async def clear(self, charge_point_id: str) -> None:  # type: ignore[override]
        await super().clear("id", charge_point_id)


failures = FailedPasswords()


class VerifiedPasswords:
    """Charger passwords verified lately, remembered in Redis so that a reconnect storm skips PBKDF2.

    After a restart every charger reconnects at once; checking 2,000 PBKDF2 hashes then costs tens of
    seconds of CPU, which is what tipped the storm over. The entry is an HMAC (keyed with the secret key)
    of the id, the password and the stored hash: Redis never holds anything that tells a password without
    the key, a new password (a new stored hash) never matches an old entry, and entries expire.
    """

    TTL_S = 7 * 24 * 3600

    def key(self, registration: Registration, password: str) -> str:
        message = "\0".join((registration.charge_point_id.lower(), password, registration.password_hash))
        digest = hmac.new(settings.SECRET_KEY.encode(), message.encode(), hashlib.sha256).hexdigest()
        return live.prefixed(f"verified:{digest}")

    async def remember(self, registration: Registration, password: str) -> None:
        await live.client().set(self.key(registration, password), 1, ex=self.TTL_S)


verified = VerifiedPasswords()
