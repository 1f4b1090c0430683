"""Real servers for tests: daphne processes serving the ASGI app against the test database."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings

from hoa_charging.procfile import daphne_listen_flags, daphne_websocket_flags
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout, interval=0.1, what=f"daphne listening on {port}")


def database_url_for_subprocesses() -> str:
    """A DATABASE_URL that points another process (daphne, a Celery worker) at the test database."""
    from django.db import connection

    db = connection.settings_dict
    assert db["NAME"].startswith("test_"), "refusing to point a subprocess at a non-test database"
    user = db["USER"] or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db["HOST"] or db.get("OPTIONS", {}).get("host", "")
    if host.startswith("/"):  # a Unix socket folder (the embedded PostgreSQL)
        return f"postgres://{user}{password}@/{db['NAME']}?host={host}"
    return f"postgres://{user}{password}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def subprocess_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server process of this run: the test database, this run's Redis and channel-layer
    prefix, plus ``extra``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": settings.REDIS_URL,
        "CHANNEL_LAYER_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "DJANGO_SETTINGS_MODULE": "hoa_charging.settings",
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }
    env.pop("TEST_DATABASE_NAME", None)
    return env


class Daphne:
    """A real daphne process on a free port, sharing this run's Redis and channel-layer prefix.

    ``database_url`` is the ``test_database_url`` fixture. ``restart`` keeps the port. ``args`` are
    extra daphne options (e.g. the Procfile's --proxy-headers); ``env`` adds to the environment.
    """

    def __init__(
        self, database_url: str, log_path: Path, *, args: tuple[str, ...] = (), env: dict[str, str] | None = None
    ):
        self.port = free_port()
        self.args = args
        self.url = f"ws://127.0.0.1:{self.port}/ocpp/"
        self.env = subprocess_env(database_url, {"LOG_LEVEL": "WARNING", **(env or {})})
        self.log = log_path.open("w")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", *daphne_websocket_flags(), *daphne_listen_flags(self.port), *self.args,
             "hoa_charging.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log.close()

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-5000:]

    def restart(self, down_for: float = 0) -> None:
        self.stop()
        time.sleep(down_for)  # the point: chargers find the server gone for this long
        self.start()


@contextlib.contextmanager
def daphne_running(tmp_path_factory, env: dict[str, str] | None = None) -> Iterator[Daphne]:
    """A module's daphne on the test database (its log in a folder of its own), stopped when the block ends."""
    server = Daphne(database_url_for_subprocesses(), tmp_path_factory.mktemp("daphne") / "daphne.log", env=env)
    try:
        server.start()
        yield server
    finally:
        server.close()


class CeleryWorker:
    """A real Celery worker of the platform (the Procfile's, with the solo pool, every queue) on this run's test database,
    Redis and channel-layer prefix. ``env`` adds to the environment (localstripe, SMTP, the balancer's
    settings); ``log_path`` keeps its output (else it is dropped); ``purge`` empties the broker first: tasks
    that earlier tests queued without a worker to run them would be run first, and delay or disturb this one.
    """

    def __init__(self, database_url: str, *, env: dict[str, str] | None = None, log_path: Path | None = None,
                 loglevel: str = "WARNING", purge: bool = True):
        self.env = subprocess_env(database_url, env)
        self.log_path, self.loglevel, self.purge = log_path, loglevel, purge
        self.log = None
        self.process: subprocess.Popen | None = None

    def start(self) -> CeleryWorker:
        if self.purge:
            from hoa_charging.celery import app

            app.control.purge()
        self.log = self.log_path.open("w") if self.log_path is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "hoa_charging", "worker", "--pool", "solo", "--loglevel",
             self.loglevel, "-Q", ",".join(settings.CELERY_TASK_QUEUES), "--without-heartbeat", "--without-mingle",
             "--without-gossip"],
            cwd=ROOT, env=self.env, stdout=self.log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None


def stop_process(process: subprocess.Popen, timeout: float = 20) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
