"""Run daphne recording every cyclic garbage collection of its process: one JSON line per collection that took
at least 5 ms (wall clock ``at``, ``generation``, ``ms``, ``collected``), appended
to OUT as it happens; the totals per generation when the process stops.

    .venv/bin/python bench/gc_daphne.py OUT.jsonl -e tcp:port=8000:interface=127.0.0.1 hoa_charging.asgi:application

bench/ocpp_load.py uses it with --gc-log OUT.jsonl: a stall of the event loop that no profile of the code shows
may be a full collection of a process that holds thousands of connections.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import time


def main() -> None:
    out_path, args = sys.argv[1], sys.argv[2:]
    sys.argv = ["daphne", *args]
    from daphne.cli import CommandLineInterface

    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life; a restart appends
    totals = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    started: list[float] = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        generation = info["generation"]
        totals[generation][0] += 1
        totals[generation][1] += ms
        if ms >= 5:
            out.write(json.dumps({"at": round(time.time(), 3), "generation": generation, "ms": round(ms, 1),
                                  "collected": info["collected"]}) + "\n")

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    gc.callbacks.append(callback)
    try:
        CommandLineInterface.entrypoint()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        gc.callbacks.remove(callback)
        out.write(json.dumps({"totals": {g: {"count": c, "ms": round(ms, 1)} for g, (c, ms) in totals.items()},
                              "tracked": len(gc.get_objects())}) + "\n")
        out.close()


if __name__ == "__main__":
    main()
