"""Login lockout rules, plugged into django-axes (settings: AXES_*, PROXY_COUNT).

- Failures count per e-mail address and client address, with the e-mail compared
  case-insensitively, as the login itself does: "Alice@X" and "alice@x" are one
  account, so changing the case does not buy an attacker more guesses.
- Failures also count per client address over all e-mails, with a higher limit
  (AXES_ADDRESS_FAILURE_LIMIT): one address trying a few passwords on many accounts
  (password spraying) is stopped too, while a building's residents behind one shared
  address are not locked out by each other's typos.
- The client address is read from X-Forwarded-For when PROXY_COUNT proxies are in
  front (see docs/deployment.md).
"""

from __future__ import annotations

import ipaddress

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Sum


def username_for_lockout(request, credentials: dict | None = None) -> str | None:
    field = settings.AXES_USERNAME_FORM_FIELD
    source = credentials or (request.POST if request is not None else {})
    raw = source.get(field)
    return raw.strip().lower() if isinstance(raw, str) else raw


def _address(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def client_address(request) -> str | None:
    """The client's address, as the outermost of PROXY_COUNT trusted proxies saw it.

    Each proxy appends the address it received the request from to X-Forwarded-For,
    so the entry PROXY_COUNT places from the right was written by our outermost proxy;
    anything left of it was written by the client and may be invented. (daphne's
    --proxy-headers takes the leftmost entry, which is right only when the proxy
    replaces the header; this works either way.) A request with fewer entries than
    proxies came around them: it gets no address, and all such requests share one
    count, so inventing addresses gains nothing.
    """
    count = settings.PROXY_COUNT
    if count == 0:
        return _address(request.META.get("REMOTE_ADDR"))
    forwarded = [part for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if len(forwarded) < count:
        return None
    return _address(forwarded[-count])


class LockoutHandler(AxesDatabaseHandler):
    """axes' database handler, plus the per-address limit (module docstring)."""

    def get_failures(self, request, credentials: dict | None = None) -> int:
        per_account = super().get_failures(request, credentials)
        # Filtering on None matches the shared count of requests that came around the proxies.
        per_address = (
            AccessAttempt.objects.filter(
                ip_address=request.axes_ip_address, attempt_time__gte=get_cool_off_threshold(request)
            ).aggregate(total=Sum("failures_since_start"))["total"]
            or 0
        )
        if per_address >= settings.AXES_ADDRESS_FAILURE_LIMIT:
            # axes compares one number with one limit: report the address's lock as the account limit.
            return max(per_account, get_failure_limit(request, credentials))
        return per_account
