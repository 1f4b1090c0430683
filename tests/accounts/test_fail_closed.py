"""Without configuration the platform refuses to start, rather than run with DEBUG and a public key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core import signing
from django.core.cache import cache

from apps.accounts import handoff
from apps.core.tenants import in_public_schema
from hoa_charging.settings import DEVELOPMENT_SECRET_KEY
from tests.servers import ROOT, free_port

MAPLE = "maple-court.localhost"
REAL_KEY = "a-production-key-that-nobody-has-seen-0123456789-abcdefghijklmnop"


def environment(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="hoa_charging.settings")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_manage_py_without_hoa_env_refuses_and_says_why():
    result = run([sys.executable, "manage.py", "check"], environment(HOA_ENV=None))
    assert result.returncode != 0
    assert "HOA_ENV is not set" in result.stderr


def test_daphne_without_hoa_env_does_not_serve():
    port = free_port()
    args = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "hoa_charging.asgi:application"]
    result = run(args, environment(HOA_ENV=None), timeout=60)
    assert result.returncode != 0
    assert "HOA_ENV is not set" in result.stderr


def test_development_settings_only_when_asked_for():
    script = "from django.conf import settings; print(settings.DEBUG, settings.SECRET_KEY == settings.DEVELOPMENT_SECRET_KEY)"
    result = run([sys.executable, "-c", f"import django; django.setup(); {script}"], environment(HOA_ENV="development"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_production_refuses_the_development_key():
    env = environment(HOA_ENV="production", DJANGO_SECRET_KEY=DEVELOPMENT_SECRET_KEY, ALLOWED_HOSTS="charging.example.com")
    result = run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is the public development key" in result.stderr


def test_production_requires_a_secret_key():
    env = environment(HOA_ENV="production", DJANGO_SECRET_KEY=None, ALLOWED_HOSTS="charging.example.com")
    result = run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def _ticket_signed_with(key: str, user_id: int, condominium_id: int) -> str:
    nonce = "forged-nonce"
    with in_public_schema():
        cache.set(f"handoff:{nonce}", 1, timeout=60)  # even with a live nonce, the signature must decide
    return signing.dumps({"u": user_id, "c": condominium_id, "n": nonce}, key=key, salt=handoff.SALT)


@pytest.mark.django_db
def test_a_handoff_ticket_signed_with_the_development_key_is_refused(client, world, settings):
    settings.SECRET_KEY = REAL_KEY
    forged = _ticket_signed_with(DEVELOPMENT_SECRET_KEY, world.acme_manager.pk, world.maple.pk)
    assert handoff.redeem_ticket(forged, world.maple.pk) is None
    response = client.get("/accounts/handoff/", {"ticket": forged}, HTTP_HOST=MAPLE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get("/", HTTP_HOST=MAPLE).status_code == 302  # not logged in
    # A harbor manager's genuine ticket for Maple Court gets nothing either.
    genuine_other = handoff.issue_ticket(world.harbor_manager.pk, world.maple.pk)
    assert client.get("/accounts/handoff/", {"ticket": genuine_other}, HTTP_HOST=MAPLE).status_code == 404
    # The same ticket signed with the real key is accepted: the refusal above is the key's doing.
    genuine = handoff.issue_ticket(world.acme_manager.pk, world.maple.pk)
    assert client.get("/accounts/handoff/", {"ticket": genuine}, HTTP_HOST=MAPLE)["Location"] == "/"
    assert client.get("/", HTTP_HOST=MAPLE).status_code == 200


def test_production_refuses_a_simulation_pace_for_the_balancer():
    env = environment(HOA_ENV="production", DJANGO_SECRET_KEY=REAL_KEY, ALLOWED_HOSTS="charging.example.com",
                      LOADBALANCING_SIMULATION_SPEED="20")
    result = run([sys.executable, "manage.py", "check"], env)
    assert result.returncode != 0
    assert "LOADBALANCING_SIMULATION_SPEED must be 1 to 3600, and 1 with HOA_ENV=production" in result.stderr
    # Development accepts it, and the balancer reads it.
    script = "from django.conf import settings; print(settings.LOADBALANCING_SIMULATION_SPEED)"
    result = run([sys.executable, "-c", f"import django; django.setup(); {script}"],
                 environment(HOA_ENV="development", LOADBALANCING_SIMULATION_SPEED="20"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20"]
