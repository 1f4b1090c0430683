"""The simulated residents' phones: the only module that talks to the platform's resident endpoints over HTTP.

No Django here: the command gives it the platform's address, the building's host, the cookie names and the key
of a logged-in session (apps/simulator/services.py makes one, standing in for the resident's phone). Like a
browser, it takes the CSRF token from the cookie a page of the building sets and sends it back with the PUT.

    PUT /api/v1/sessions/<session id>/needs   {"energy_wh": 20000, "ready_by": "2026-03-11T07:00:00+00:00"}
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.parse
from datetime import datetime
from http.cookies import SimpleCookie

logger = logging.getLogger("apps.simulator")

HOME_PATH = "/"  # the resident's app page: it carries a form, so it sets the CSRF cookie
LOGIN_PATH = "/accounts/login/"  # what a browser that is not logged in gets


class NoCsrfToken(Exception):
    """The page set no CSRF cookie (a session that is not logged in, or has no role, in this building)."""


class ResidentApp:
    """A resident's phone on one building's host, at the platform's HTTP address ``base_url``."""

    def __init__(self, base_url: str, host: str, *, session_cookie: str = "sessionid",
                 csrf_cookie: str = "csrftoken", timeout_s: float = 5):
        parsed = urllib.parse.urlsplit(base_url)
        self.scheme = parsed.scheme or "http"
        self.address = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if self.scheme == "https" else 80)
        self.host = host
        self.session_cookie, self.csrf_cookie = session_cookie, csrf_cookie
        self.timeout_s = timeout_s
        self._tokens: dict[str, str] = {}  # session key -> its CSRF token, as a browser keeps its cookie

    def _request(self, method: str, path: str, cookies: dict[str, str], body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, SimpleCookie, bytes]:
        connection_class = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = connection_class(self.address, self.port, timeout=self.timeout_s)
        try:
            sent = {"Host": self.host, "Accept": "application/json, text/html"} | (headers or {})
            if cookies:
                sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
            conn.request(method, path, body=body, headers=sent)
            try:
                response = conn.getresponse()
                content = response.read()
            except http.client.HTTPException as error:  # an answer that is not HTTP: as good as no answer
                raise ConnectionError(f"{method} {path}: {type(error).__name__}") from error
            jar: SimpleCookie = SimpleCookie()
            for header in response.headers.get_all("Set-Cookie") or []:
                jar.load(header)
            return response.status, jar, content
        finally:
            conn.close()

    def csrf_token(self, session_key: str | None) -> str:
        """The CSRF token a browser gets: from the app's page when logged in (``session_key``), from the login
        page otherwise. Raises NoCsrfToken when the page sets none, OSError when the platform is unreachable."""
        path = HOME_PATH if session_key else LOGIN_PATH
        cookies = {self.session_cookie: session_key} if session_key else {}
        status, jar, _ = self._request("GET", path, cookies)
        morsel = jar.get(self.csrf_cookie)
        if morsel is None or not morsel.value:
            raise NoCsrfToken(f"GET {path} on {self.host} answered {status} without a CSRF cookie")
        return morsel.value

    def say_needs(self, session_key: str, session_pk: int, *, energy_wh: int | None, ready_by: datetime | None,
                  csrf_token: str | None = None) -> int:
        """PUT what the car needs as the phone logged in with ``session_key`` does; the HTTP status (200 when
        the platform took it). The CSRF token is fetched once per session unless given. Raises NoCsrfToken, and
        OSError when the platform is unreachable or does not answer."""
        token = csrf_token or self._tokens.get(session_key)
        if token is None:
            token = self._tokens[session_key] = self.csrf_token(session_key)
        body = json.dumps({"energy_wh": energy_wh,
                           "ready_by": ready_by.isoformat() if ready_by is not None else None}).encode()
        status, _, content = self._request(
            "PUT", f"/api/v1/sessions/{session_pk}/needs", {self.session_cookie: session_key, self.csrf_cookie: token},
            body=body, headers={"Content-Type": "application/json", "X-CSRFToken": token,
                                "Origin": f"{self.scheme}://{self.host}"})
        if status != 200:
            logger.warning("needs of session %s on %s: HTTP %s %s", session_pk, self.host, status, _error(content))
        return status


def _error(content: bytes) -> str:
    """The endpoint's JSON error, if it gave one (a 404 or a CSRF refusal is a page)."""
    try:
        answer = json.loads(content)
    except ValueError:
        return ""
    return str(answer.get("error", "")) if isinstance(answer, dict) else ""
