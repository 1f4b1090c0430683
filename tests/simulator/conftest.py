from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.dbsetup  # noqa: F401  (tests that only use ``committed`` get the test database)

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daphne exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on {port} within {timeout} s")


class Daphne:
    """A real daphne process serving the ASGI app against the test database. ``restart`` keeps the port."""

    def __init__(self, database_url: str, log_path: Path):
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ocpp/"
        self.env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
        self.log = log_path.open("w")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(self.port),
             "hoa_charging.asgi:application"],
            cwd=ROOT, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
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

    def read_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-5000:]

    def restart(self, down_for: float = 0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@pytest.fixture
def daphne(test_database_url, tmp_path) -> Iterator[Daphne]:
    server = Daphne(test_database_url, tmp_path / "daphne.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.log.close()


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:8].upper()
