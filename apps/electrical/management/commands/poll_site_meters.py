"""python manage.py poll_site_meters [--duration SECONDS]: poll every Modbus site meter (docs/site-meter.md)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from django.core.management.base import BaseCommand

from apps.electrical.modbus import poll_forever


class Command(BaseCommand):
    help = "Poll the Modbus TCP site meters of every building, each on its own interval (runs until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--duration", type=float, help="stop after this many seconds (default: run on)")
        parser.add_argument("--reload", type=float, help="seconds between looks for changed meters "
                                                         "(default SITE_METER_POLL_RELOAD_S)")

    def handle(self, *args, duration=None, reload=None, **options):
        counts = asyncio.run(self._run(duration, reload))
        for key, readings in sorted(counts.items()):
            self.stdout.write(f"{key}: {readings} readings")

    async def _run(self, duration: float | None, reload: float | None) -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        return await poll_forever(stop=stop, reload_s=reload)
