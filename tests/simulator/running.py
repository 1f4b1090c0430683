"""The simulator's commands run from a test: at once (``simulate``) or in a thread while the test talks to the
platform (``Background``)."""

from __future__ import annotations

import threading
from io import StringIO

from django.core.management import call_command
from django.db import connection

from apps.simulator.management.commands.simulate_chargers import Command


def simulate(*args: str, command: Command | None = None) -> str:
    out = StringIO()
    call_command(command or Command(), *args, stdout=out)
    return out.getvalue()


class Background:
    """The simulator running in a thread while the test talks to the platform."""

    def __init__(self, *args: str):
        self.output = ""
        self.error: BaseException | None = None
        self.command = Command()
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: str) -> None:
        try:
            self.output = simulate(*args, command=self.command)
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            connection.close()

    def join(self, timeout: float, stop: bool = False) -> str:
        if stop:
            self.command.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the simulator did not stop"
        if self.error:
            raise self.error
        return self.output
