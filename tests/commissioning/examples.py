"""The example building's commissioning file, and the same under other names (Birch) for tests that commission
a building of their own."""

from __future__ import annotations

from pathlib import Path

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "maple-court.yaml").read_text()
# The example under other names, so it does not collide with the session's buildings.
BIRCH = (
    EXAMPLE.replace("maple-court", "test-birch")
    .replace("MAPLE-", "BIRCH-")
    .replace("maple-main", "birch-main")
    .replace("acme-pm", "birch-pm")
    .replace("@example.com", "@birch.test")
)
