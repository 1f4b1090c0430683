"""Browser tests: Playwright driving Debian's Chromium against a real daphne (docs/testing in README).

Chromium is installed from Debian when it is missing (``apt-get install chromium``, about a minute, as root or
through password-less sudo), so that the test command works on a fresh machine; a user who can do neither is
told what to run. Screenshots of the pages go to .local/test-artifacts/screenshots/ (the current ones are kept
in docs/screenshots/).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from tests.servers import ROOT, Daphne, daphne_running

CHROMIUM = Path("/usr/lib/chromium/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-dev-shm-usage"]
SCREENSHOTS = ROOT / ".local" / "test-artifacts" / "screenshots"


def ensure_chromium() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}; install it once as root: "
                    "apt-get install -y chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run([*prefix, *command], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"installing Chromium failed ({' '.join(command)}): {done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is not there")
    return CHROMIUM


@pytest.fixture
async def chromium():
    """A headless Chromium (Playwright's async API: the tests' own loop also drives chargers and the ORM's threads)."""
    from playwright.async_api import async_playwright

    path = ensure_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(path), headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="module")
def web(tmp_path_factory, _test_database_only) -> Iterator[Daphne]:
    """The platform's ASGI server (pages, static files, the OCPP and console websockets) on a free port."""
    with daphne_running(tmp_path_factory, env={"CONSOLE_PUSH_MS": "250"}) as server:
        yield server


def _session_key(user, host: str) -> str:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def logged_in(chromium, user, host: str, port: int, **context_options):
    """A browser context with ``user``'s session on ``host`` (as after logging in)."""
    key = await sync_to_async(_session_key)(user, host)
    context = await chromium.new_context(**context_options)
    await context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": key, "url": f"http://{host}:{port}/"}])
    return context


async def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
