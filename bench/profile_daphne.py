"""Run daphne under cProfile and write the profile when it is stopped (SIGTERM or SIGINT).

    .venv/bin/python bench/profile_daphne.py OUT.prof -b 127.0.0.1 -p 8000 hoa_charging.asgi:application

bench/ocpp_load.py uses it with --profile OUT.prof. Read the result with
``python -m pstats OUT.prof`` (sort cumulative / tottime, stats 40).
"""

from __future__ import annotations

import cProfile
import signal
import sys


def main() -> None:
    out, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["daphne", *args]
    from daphne.cli import CommandLineInterface

    profiler = cProfile.Profile()

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    profiler.enable()
    try:
        CommandLineInterface.entrypoint()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
