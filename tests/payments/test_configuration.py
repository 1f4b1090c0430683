"""Stripe's settings fail loudly when missing or bad in production; the demo runs its own localstripe."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest

from tests.payments.stripe_http import LocalStripe
from tests.servers import ROOT, free_port

PRODUCTION = {
    "HOA_ENV": "production", "DJANGO_SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "charging.example.com",
    "STRIPE_SECRET_KEY": "sk_live_" + "a" * 24, "STRIPE_PUBLISHABLE_KEY": "pk_live_" + "b" * 24,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "c" * 24, "STRIPE_API_BASE": "https://api.stripe.com",
}


def check(**changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="hoa_charging.settings", **PRODUCTION)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_production_with_stripe_keys_starts():
    result = check()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("changes", "message"), [
    ({"STRIPE_SECRET_KEY": None}, "STRIPE_SECRET_KEY, STRIPE_PUBLISHABLE_KEY and STRIPE_WEBHOOK_SECRET are required"),
    ({"STRIPE_WEBHOOK_SECRET": ""}, "are required in production"),
    ({"STRIPE_SECRET_KEY": "pk_live_" + "a" * 24}, "must be a secret or restricted key"),
    ({"STRIPE_WEBHOOK_SECRET": "secret"}, "signing secret (whsec_...)"),
    ({"STRIPE_PUBLISHABLE_KEY": "pk_test_" + "b" * 24}, "different modes"),
    ({"STRIPE_API_BASE": "http://127.0.0.1:8420"}, "must be https in production"),
    ({"STRIPE_API_BASE": "https://stripe.example.com"}, "live STRIPE_SECRET_KEY goes to https://api.stripe.com only"),
    ({"STRIPE_MAX_NETWORK_RETRIES": "9"}, "STRIPE_MAX_NETWORK_RETRIES must be 0 to 5"),
])
def test_production_refuses_missing_or_bad_stripe_settings(changes, message):
    result = check(**changes)
    assert result.returncode != 0
    assert message in result.stderr


def test_the_demo_runs_localstripe_with_its_state_in_the_data_folder(tmp_path):
    env = dict(os.environ, HOA_DATA_DIR=str(tmp_path), HOA_LOCALSTRIPE_PORT=str(free_port()), PYTHONPATH=str(ROOT))
    start = ("import json, sys; from hoa_charging import datastores; "
             "print(json.dumps(datastores.ensure_localstripe('http://127.0.0.1:9/payments/stripe/webhook', sys.executable)))")
    shared = "/tmp/localstripe.pickle"
    before = os.stat(shared).st_mtime_ns if os.path.exists(shared) else None
    try:
        result = subprocess.run([sys.executable, "-c", start], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, result.stderr
        stripe_env = json.loads(result.stdout.strip().splitlines()[-1])
        assert stripe_env["STRIPE_API_BASE"] == f"http://127.0.0.1:{env['HOA_LOCALSTRIPE_PORT']}"
        fake = LocalStripe(stripe_env["STRIPE_API_BASE"], stripe_env["STRIPE_SECRET_KEY"], tmp_path / "x.log")
        status, customer = fake.call("POST", "/v1/customers", {"email": "demo@example.com"})
        assert status == 200
        assert (tmp_path / "localstripe" / "state.pickle").exists()
        # Asked again, it finds the running one (same state).
        again = subprocess.run([sys.executable, "-c", start], cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=60)
        assert again.returncode == 0, again.stderr
        assert fake.call("GET", f"/v1/customers/{customer['id']}")[0] == 200
        after = os.stat(shared).st_mtime_ns if os.path.exists(shared) else None
        assert after == before  # the fixed path other runs use is left alone
    finally:
        subprocess.run([sys.executable, "-c", "from hoa_charging import datastores; datastores.stop_embedded()"],
                       cwd=ROOT, env=env, timeout=60)
    assert not (tmp_path / "localstripe" / "localstripe.pid").exists()


def test_a_demos_services_file_never_fills_in_production_settings(tmp_path):
    (tmp_path / "services.env").write_text(
        "# written by dev.py\nSTRIPE_SECRET_KEY=sk_test_" + "d" * 24 + "\nSTRIPE_PUBLISHABLE_KEY=pk_test_" + "e" * 24 + "\n")
    result = check(HOA_DATA_DIR=str(tmp_path), STRIPE_SECRET_KEY=None)
    assert result.returncode != 0
    assert "are required" in result.stderr
