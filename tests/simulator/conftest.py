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

import tests.ocpp.dbsetup  # noqa: F401  (tests that only use ``committed`` get the test database)

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


@pytest.fixture
def daphne(test_database_url, tmp_path) -> Iterator[str]:
    """A real daphne process serving the ASGI app against the test database; yields its OCPP URL."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": test_database_url, "LOG_LEVEL": "WARNING"}
    log = (tmp_path / "daphne.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "-b", "127.0.0.1", "-p", str(port),
         "hoa_charging.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        yield f"ws://127.0.0.1:{port}/ocpp/"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:8].upper()
