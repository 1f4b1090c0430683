#!/usr/bin/env python3
"""The project's single entry point.

    python3 dev.py demo    set everything up and run the platform with demo data
    python3 dev.py test    run the whole test suite and the quality gates

It needs only Python 3.11+ and git. It creates `.venv`, installs the pinned
dependencies from requirements.lock (again only when that file changes), and
hands over to `hoa_charging.devtool` inside the virtual environment, which
finds or starts PostgreSQL and Redis.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "requirements.lock"
MARKER = VENV / ".requirements.sha256"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py runs under whatever python3 the user has
        sys.exit(f"Python 3.11 or newer is required (this is {sys.version.split()[0]}).")
    python = venv_python()
    if not python.exists():
        print(f"Creating virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    if not MARKER.exists() or MARKER.read_text().strip() != wanted:
        print("Installing pinned dependencies from requirements.lock ...", flush=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(LOCK)],
            check=True,
        )
        MARKER.write_text(wanted + "\n")
    return python


def main() -> int:
    python = ensure_venv()
    command = [str(python), "-m", "hoa_charging.devtool", *sys.argv[1:]]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        return subprocess.call(command, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
