"""Options shared by the simulator's commands (simulate_chargers, simulate_building)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandError


def scenario_text(path: Path | None) -> tuple[str, str]:
    """The scenario file's text ("" without one) and the name its errors give (both commands)."""
    if path is None:
        return "", "<default scenario>"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as error:
        raise CommandError(f"cannot read the scenario {path}: {error.strerror}") from None


def delay_range(text: str) -> tuple[int, int]:
    low, _, high = str(text).partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise CommandError(f"--profile-delay must be seconds or LOW-HIGH seconds, e.g. 1-5, not {text!r}") from None
    if not 0 <= bounds[0] <= bounds[1]:
        raise CommandError(f"--profile-delay {text!r}: LOW must be 0 or more and at most HIGH")
    return bounds


def pace_warning(speed: float, paced: int, need_period_s: int) -> str | None:
    """What to tell the user when the balancer's pace (LOADBALANCING_SIMULATION_SPEED, as this process sees it) is
    not the simulation's speed: its residents' timers and the cars' needs would be off (docs/simulator.md).
    ``need_period_s``: the balancer's need period (allocator.Parameters), named as an example."""
    if speed > 1 and paced == 1:
        return (f"the balancer's resident timers run in real time: at {speed:g}x a {need_period_s / 60:g}-minute need "
                f"period lasts {need_period_s * speed / 3600:g} simulated hours (set "
                f"LOADBALANCING_SIMULATION_SPEED={speed:g} for the platform's processes and this command, "
                "docs/simulator.md)")
    if speed >= 1 and paced != speed:
        return (f"the balancer is paced at {paced}x (LOADBALANCING_SIMULATION_SPEED) but the simulation runs at "
                f"{speed:g}x: its residents' timers and the cars' needs are off by {speed / paced:g} times")
    return None
