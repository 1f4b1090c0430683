"""The Procfile's commands, read by the tests and the benchmarks so that they run daphne and the Celery workers as
production does."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def _web_words() -> list[str]:
    """The web process's command, each ``${VAR:-default}`` read as its default."""
    web = next(line for line in PROCFILE.read_text().splitlines() if line.startswith("web:"))
    return [re.sub(r"\$\{[A-Za-z_]+:-([^}]*)\}", r"\1", word) for word in web.split()]


def daphne_websocket_flags() -> list[str]:
    """The ``--websocket...`` flags of the web process."""
    words = _web_words()
    flags: list[str] = []
    for index, word in enumerate(words):
        if word.startswith("--websocket"):
            flags += [word, words[index + 1]]
    return flags


def daphne_listen_flags(port: int, interface: str = "127.0.0.1") -> list[str]:
    """Where daphne listens, as the web process does (its listen queue above all: ``backlog``) but on ``port``
    and ``interface``: ``["-e", "tcp:port=PORT:interface=INTERFACE:backlog=N"]``."""
    words = _web_words()
    endpoint = dict(part.split("=", 1) for part in words[words.index("-e") + 1].split(":")[1:])
    return ["-e", f"tcp:port={port}:interface={interface}:backlog={endpoint['backlog']}"]


def celery_workers(loglevel: str | None = None) -> dict[str, list[str]]:
    """Each Celery worker process of the Procfile (name -> its arguments after ``celery``), e.g.
    ``{"balancer": ["-A", "hoa_charging", "worker", "--concurrency", "4", "-Q", "balancing", ...]}``;
    ``loglevel`` replaces the Procfile's."""
    workers: dict[str, list[str]] = {}
    for line in PROCFILE.read_text().splitlines():
        name, _, command = line.partition(":")
        words = shlex.split(command)
        if words[:1] != ["celery"] or "worker" not in words:
            continue
        args = words[1:]
        if loglevel is not None and "--loglevel" in args:
            args[args.index("--loglevel") + 1] = loglevel
        workers[name.strip()] = args
    return workers
