"""Commands behind `python3 dev.py`, run inside the virtual environment.

demo       services (and localstripe when no Stripe key is set), migrations, demo buildings and logins,
           then web + worker + beat
test       the quality gates and the whole test suite
services   find or start PostgreSQL and Redis and print their URLs
stop       stop the embedded PostgreSQL, Redis and localstripe (if this project started them)
manage ... run a manage.py command with the services' environment
translations  compile locale/*/LC_MESSAGES/*.po into the .mo files Django reads (demo, test and manage do it too)
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from hoa_charging import datastores

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EXAMPLES = ["examples/maple-court.yaml", "examples/oak-tower.yaml", "examples/harbor-view.yaml"]


def _bin(name: str) -> str:
    return str(Path(PYTHON).parent / name)


def _run(args: list[str], env: dict[str, str], check: bool = True) -> int:
    print("$", " ".join(args), flush=True)
    code = subprocess.call(args, cwd=ROOT, env=env)
    if check and code != 0:
        sys.exit(code)
    return code


def _service_env() -> tuple[dict[str, str], datastores.ServiceURLs]:
    urls = datastores.ensure_services()
    print(f"PostgreSQL ({urls.database_origin}): {urls.database_url}")
    print(f"Redis ({urls.redis_origin}): {urls.redis_url}")
    env = dict(os.environ, **urls.as_env(), PYTHONPATH=str(ROOT))
    # The Procfile's commands (daphne, celery) come from the virtual environment.
    env["PATH"] = str(Path(PYTHON).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")
    # The settings refuse to start without HOA_ENV; everything dev.py starts (manage.py,
    # pytest and the processes the tests spawn, the Procfile's processes) is development.
    env["HOA_ENV"] = "development"
    return env, urls


def _write_services_env(urls: datastores.ServiceURLs, extra: dict[str, str] | None = None) -> None:
    folder = datastores.data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{k}={v}" for k, v in {**urls.as_env(), **(extra or {})}.items()]
    (folder / "services.env").write_text("# written by dev.py: the services the demo uses\n" + "\n".join(lines) + "\n")


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def cmd_services(_: list[str]) -> int:
    _, urls = _service_env()
    _write_services_env(urls)
    return 0


def cmd_stop(_: list[str]) -> int:
    datastores.stop_embedded()
    print("embedded services stopped")
    return 0


def cmd_manage(args: list[str]) -> int:
    _translations()
    env, _ = _service_env()
    return _run([PYTHON, "manage.py", *args], env, check=False)


def _stripe_env(env: dict[str, str]) -> dict[str, str]:
    """Stripe for the demo: the keys in the environment if there are any, else localstripe on loopback."""
    if env.get("STRIPE_SECRET_KEY"):
        print("Stripe: the keys in the environment")
        return {}
    webhook_url = f"http://127.0.0.1:{env['HOA_PORT']}/payments/stripe/webhook"
    stripe_env = datastores.ensure_localstripe(webhook_url, PYTHON)
    print(f"Stripe: localstripe (a fake, no money moves) at {stripe_env['STRIPE_API_BASE']}, webhooks to {webhook_url}")
    return stripe_env


def _translations() -> None:
    """The .mo catalogues from the .po files (hoa_charging/translations.py), when they are missing or older."""
    from hoa_charging.translations import compile_catalogues

    for mo in compile_catalogues(ROOT / "locale"):
        print(f"translations: compiled {mo.relative_to(ROOT)}")


def cmd_translations(_: list[str]) -> int:
    _translations()
    return 0


def cmd_demo(args: list[str]) -> int:
    _translations()
    env, urls = _service_env()
    port = env.setdefault("HOA_PORT", "8000")
    env.setdefault("HOA_BIND", "127.0.0.1")
    stripe_env = _stripe_env(env)
    env.update(stripe_env)
    _write_services_env(urls, stripe_env)
    _run([PYTHON, "manage.py", "migrate_schemas", "-v", "0"], env)
    # demo_logins gives every example person a known password right after, so inviting
    # them to choose one would only fill the terminal with e-mails (the console backend).
    _run([PYTHON, "manage.py", "commission", "--no-invite", *EXAMPLES], env)
    _run([PYTHON, "manage.py", "demo_logins", "--port", port], env)
    if "--no-run" in args:
        return 0
    print("Starting web (daphne), worker and beat. Stop with Ctrl-C.", flush=True)
    return _run([_bin("honcho"), "start", "-f", "Procfile", "--no-prefix"], env, check=False)


def pure_modules() -> list[str]:
    """The modules import-linter keeps free of Django: they are also type-checked strictly."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        config = tomllib.load(fh)
    modules: list[str] = []
    for contract in config["tool"]["importlinter"]["contracts"]:
        # The contract that keeps modules free of Django (others, such as the one-SDK rule, name whole packages).
        if "django" in contract.get("forbidden_modules", []):
            modules += contract.get("source_modules", [])
    return [module.replace(".", "/") + ".py" for module in modules]


def cmd_test(args: list[str]) -> int:
    _translations()
    env, urls = _service_env()
    if urls.redis_origin != "environment":
        # Keep test traffic off the demo's Redis database.
        env["REDIS_URL"] = _with_redis_db(urls.redis_url, 1)
    env.setdefault("CHANNEL_LAYER_PREFIX", "hoatest")
    gates = [
        ["ruff", "check", "."],
        ["lint-imports"],
        ["mypy", "--strict", *pure_modules()],
        [PYTHON, "manage.py", "check", "--fail-level", "WARNING"],
        [PYTHON, "manage.py", "makemigrations", "--check", "--dry-run"],
    ]
    for gate in gates:
        if gate[0] in {"ruff", "lint-imports", "mypy"}:
            gate[0] = _bin(gate[0])
        _run(gate, env)
    production = dict(
        env,
        HOA_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="charging.example.com,.charging.example.com",
        # Production requires Stripe's keys; these are shaped like real ones and used for nothing.
        STRIPE_SECRET_KEY="sk_test_" + secrets.token_urlsafe(24),
        STRIPE_PUBLISHABLE_KEY="pk_test_" + secrets.token_urlsafe(24),
        STRIPE_WEBHOOK_SECRET="whsec_" + secrets.token_urlsafe(24),
        STRIPE_API_BASE="https://api.stripe.com",
    )
    _run([PYTHON, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], production)
    return _run([PYTHON, "-m", "pytest", *args], env, check=False)


COMMANDS = {
    "demo": cmd_demo,
    "test": cmd_test,
    "services": cmd_services,
    "stop": cmd_stop,
    "manage": cmd_manage,
    "translations": cmd_translations,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    try:
        return COMMANDS[argv[0]](argv[1:])
    except datastores.ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
