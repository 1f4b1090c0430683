"""The Procfile's web command, read by the tests and the benchmark so that they run daphne as production does."""

from __future__ import annotations

import re
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def daphne_websocket_flags() -> list[str]:
    """The ``--websocket...`` flags of the web process, with ``${VAR:-default}`` read as its default."""
    web = next(line for line in PROCFILE.read_text().splitlines() if line.startswith("web:"))
    words = web.split()
    flags: list[str] = []
    for index, word in enumerate(words):
        if word.startswith("--websocket"):
            flags += [word, re.sub(r"\$\{[A-Za-z_]+:-([^}]*)\}", r"\1", words[index + 1])]
    return flags
