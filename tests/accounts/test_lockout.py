"""Failed logins lock out per e-mail (any case) and address, and per address over all e-mails.

The last test goes through the real request path: a daphne process started as the Procfile starts
it (--proxy-headers), behind a pretend proxy that sends X-Forwarded-For.
"""

from __future__ import annotations

import http.client
import re
from urllib.parse import urlencode

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.db.models import Q

from tests.servers import Daphne

MAPLE = "maple-court.localhost"
HARBOR = "harbor-view.localhost"
RIGHT = "correct-horse-battery"


def attempt(client, email, password="wrong", host=MAPLE, address="127.0.0.1"):
    return client.post("/accounts/login/", {"username": email, "password": password}, HTTP_HOST=host,
                       REMOTE_ADDR=address)


@pytest.mark.django_db
def test_changing_the_case_of_the_e_mail_does_not_buy_more_guesses(client, world, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    for email in ["alice@maple.test", "Alice@maple.test", "ALICE@MAPLE.TEST", "alice@Maple.Test"]:
        assert attempt(client, email).status_code == 200
    assert attempt(client, " aLiCe@maple.test").status_code == 429  # the fifth failure locks
    assert attempt(client, "alice@maple.test", RIGHT).status_code == 429
    # Someone else, from another address, is not affected; nor is Alice from elsewhere.
    assert attempt(client, "hana@harbor.test", RIGHT, host=HARBOR, address="10.9.8.7").status_code == 302
    assert attempt(client, "alice@maple.test", RIGHT, address="10.9.8.8").status_code == 302


@pytest.mark.django_db
def test_one_address_trying_many_accounts_is_locked_out(client, world, settings):
    settings.AXES_ADDRESS_FAILURE_LIMIT = 6
    sprayer = "192.0.2.50"
    targets = ["alice@maple.test", "olga@oak.test", "board@maple.test", "nobody@maple.test", "x@y.test", "z@y.test"]
    for email in targets[:-1]:  # one guess per account: never near the per-account limit
        assert attempt(client, email, "Summer2026!", address=sprayer).status_code == 200
    assert attempt(client, targets[-1], "Summer2026!", address=sprayer).status_code == 429  # the sixth locks
    # The address is now locked, for every account, even with the right password...
    assert attempt(client, "hana@harbor.test", RIGHT, host=HARBOR, address=sprayer).status_code == 429
    assert attempt(client, "alice@maple.test", RIGHT, address=sprayer).status_code == 429
    # ...while the same people log in from their own addresses.
    assert attempt(client, "alice@maple.test", RIGHT, address="192.0.2.51").status_code == 302
    assert attempt(client, "hana@harbor.test", RIGHT, host=HARBOR, address="192.0.2.52").status_code == 302


@pytest.mark.django_db
def test_a_few_typos_from_a_shared_address_lock_nobody_else(client, world, settings):
    shared = "192.0.2.60"  # e.g. the building's internet connection
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt(client, "alice@maple.test", address=shared).status_code == 200
    assert attempt(client, "board@maple.test", RIGHT, address=shared).status_code == 302


# --- the real request path -------------------------------------------------------------------

PROXIED = ["203.0.113.10", "203.0.113.11"]
INVENTED = ["198.51.100.66", "198.51.100.67", "198.51.100.68", "198.51.100.69", "198.51.100.70"]


class Browser:
    """Just enough of a browser for Django's login form: one cookie jar, the CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str | None = None, forwarded_for: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Host": "localhost"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        content = response.read().decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";")[0]
        conn.close()
        return response.status, content

    def log_in(self, email: str, password: str, forwarded_for: str | None) -> int:
        _, page = self.request("GET", "/accounts/login/", forwarded_for=forwarded_for)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        body = urlencode({"csrfmiddlewaretoken": token, "username": email, "password": password})
        status, _ = self.request("POST", "/accounts/login/", body=body, forwarded_for=forwarded_for)
        return status


def _forget_attempts():
    for model in (AccessAttempt, AccessLog, AccessFailureLog):
        model.objects.filter(Q(ip_address__in=PROXIED + INVENTED) | Q(ip_address__isnull=True)).delete()


def test_behind_a_proxy_the_forwarded_client_address_counts(committed, world, test_database_url, tmp_path):
    daphne = Daphne(
        test_database_url,
        tmp_path / "daphne.log",
        args=("--proxy-headers",),  # as in the Procfile
        env={"PROXY_COUNT": "1", "AXES_FAILURE_LIMIT": "3", "AXES_ADDRESS_FAILURE_LIMIT": "4"},
    )
    _forget_attempts()
    try:
        daphne.start()
        browser = Browser(daphne.port)
        # The attacker invents a new leftmost address every time; our proxy appends the real one.
        for n in range(4):
            status = browser.log_in(f"spray-{n}@nowhere.test", "Summer2026!", f"{INVENTED[n]}, {PROXIED[0]}")
            assert status == (200 if n < 3 else 429), daphne.read_log()  # the fourth failure locks
        recorded = set(AccessAttempt.objects.filter(username__startswith="spray-").values_list("ip_address", flat=True))
        assert recorded == {PROXIED[0]}
        # Locked by address: even the right password of a real account, whatever the invented part says.
        assert browser.log_in("alice@maple.test", RIGHT, f"{INVENTED[4]}, {PROXIED[0]}") == 429
        # Another client behind the same proxy logs in.
        assert Browser(daphne.port).log_in("alice@maple.test", RIGHT, PROXIED[1]) == 302
        # A request that came around the proxy (no X-Forwarded-For) has no address of its own: it is
        # counted with every other such request, never as the proxy's or the invented address.
        assert Browser(daphne.port).log_in("around@nowhere.test", "x", None) == 200
        assert AccessAttempt.objects.get(username="around@nowhere.test").ip_address is None
    finally:
        daphne.close()
        _forget_attempts()
