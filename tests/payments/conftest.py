"""Payments against a real fake Stripe: localstripe (hoa_charging/localstripe_server.py) on a free port, a real
daphne serving the platform as the webhook's address, and a real Celery worker doing the webhook's work.

localstripe keeps its state in /tmp/localstripe.pickle whatever its arguments, so parallel runs on one
machine would overwrite each other: the wrapper keeps the state in memory instead, and the process runs with
its own working directory, HOME and TMPDIR under this run's temporary folder.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import factories
from tests.helpers import wait_for
from tests.payments.stripe_http import LocalStripe
from tests.servers import ROOT, CeleryWorker, Daphne, free_port

SECRET_KEY = "sk_test_hoa_localstripe_" + secrets.token_hex(8)
PUBLISHABLE_KEY = "pk_test_hoa_localstripe"
WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)


def _wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, 30, interval=0.1, what=f"{what} listening on {port}")


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory) -> LocalStripe:
    home = tmp_path_factory.mktemp("localstripe")
    port = free_port()
    log = (home / "localstripe.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "hoa_charging.localstripe_server", "--port", str(port)],
        cwd=home, env={**os.environ, "HOME": str(home), "TMPDIR": str(home), "PYTHONPATH": str(ROOT)},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, process, "localstripe")
        yield LocalStripe(f"http://127.0.0.1:{port}", SECRET_KEY, home / "localstripe.log")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def stripe_env(localstripe: LocalStripe) -> dict[str, str]:
    return {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_PUBLISHABLE_KEY": PUBLISHABLE_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": localstripe.url,
    }


@pytest.fixture
def stripe_settings(settings, localstripe):
    """This process talks to the same localstripe as the daphne and the worker."""
    settings.STRIPE_SECRET_KEY = SECRET_KEY
    settings.STRIPE_PUBLISHABLE_KEY = PUBLISHABLE_KEY
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.STRIPE_API_BASE = localstripe.url
    settings.STRIPE_MAX_NETWORK_RETRIES = 2
    return settings


def start_worker(localstripe: LocalStripe, database_url: str, log_path: Path) -> CeleryWorker:
    """A real Celery worker of the platform (the Procfile's worker), talking to this run's localstripe."""
    return CeleryWorker(database_url, env=stripe_env(localstripe), log_path=log_path, loglevel="INFO",
                        purge=False).start()


@dataclass
class Platform:
    """daphne serving the platform (Stripe's webhooks arrive here) and the Celery worker behind it."""

    daphne: Daphne
    worker: CeleryWorker
    worker_log: Path
    webhook_url: str

    def logs(self) -> str:
        return self.daphne.read_log() + "\n--- worker ---\n" + self.worker_log.read_text()[-5000:]


# Module-scoped: its Celery worker takes every task of this run's queue, so it must not outlive the tests that
# need it (the OCPP and simulator tests bring their own workers).
@pytest.fixture(scope="module")
def platform(tmp_path_factory, _test_database_only, localstripe) -> Platform:
    from tests.servers import database_url_for_subprocesses

    folder = tmp_path_factory.mktemp("platform")
    database_url = database_url_for_subprocesses()
    env = stripe_env(localstripe)
    daphne = Daphne(database_url, folder / "daphne.log", env=env)
    worker_log = folder / "worker.log"
    worker = start_worker(localstripe, database_url, worker_log)
    try:
        daphne.start()
        webhook_url = f"http://127.0.0.1:{daphne.port}/payments/stripe/webhook"
        localstripe.register_webhook("hoa-" + uuid.uuid4().hex[:8], webhook_url, WEBHOOK_SECRET)
        yield Platform(daphne, worker, worker_log, webhook_url)
    finally:
        daphne.close()
        worker.stop()


@pytest.fixture
def payer(world, committed):
    """A resident of Maple Court of this test only (rows are committed: other processes see them)."""
    from apps.buildings.models import Resident
    from apps.core.tenants import in_schema

    email = f"payer-{uuid.uuid4().hex[:10]}@maple.test"
    user = factories.resident(world.maple, email, "101")
    with in_schema(world.maple.schema_name):
        return Resident.objects.select_related("user").get(user=user)


SAKURA_HEIGHTS = """
company: {slug: sakura-kanri, name: Sakura Kanri}
condominium:
  slug: sakura-heights
  name: Sakura Heights
  domains: [sakura-heights.localhost]
  timezone: Asia/Tokyo
  currency: JPY
electrical:
  supply: {voltage_v: 200, phases: 3, max_current_a: 100, derate: 0.8, margin_a: 5}
units:
  - {number: "301"}
people:
  - {email: manager@sakura.test, name: Manager, roles: [manager]}
  - {email: yuki@sakura.test, name: Yuki, unit: "301", roles: [resident], id_tags: ["0D0D0D0D"]}
"""


@pytest.fixture(scope="session")
def sakura(world, django_db_blocker):
    """A building that bills in yen (a zero-decimal currency): its schema and its resident."""
    from apps.buildings.models import Resident
    from apps.commissioning.services import commission_text
    from apps.core.tenants import in_public_schema, in_schema
    from apps.tenancy.models import Condominium

    with django_db_blocker.unblock():
        with in_public_schema():
            commission_text(SAKURA_HEIGHTS, source="sakura-heights.yaml", invite=False)
            schema = Condominium.objects.get(slug="sakura-heights").schema_name
        with in_schema(schema):
            resident = Resident.objects.select_related("user").get(user__email="yuki@sakura.test")
    return schema, resident
