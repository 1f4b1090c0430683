"""The commissioning file a simulator test hands its command: Maple Court with one charger of its own on the supply
and the site meter under test (an HTTP-push one with a token, or a Modbus TCP one)."""

from __future__ import annotations

from pathlib import Path

TEMPLATE = """\
company: {{slug: acme, name: Acme Property Management}}
condominium: {{slug: maple-court, name: Maple Court, domains: [maple-court.localhost], timezone: UTC, currency: USD}}
electrical:
  supply: {{voltage_v: 230, phases: 3, max_current_a: 200, derate: 0.8, margin_a: 5}}
  site_meter: {site_meter}
chargers:
  - id: {charger}
    password: "{password}"
    circuit: supply
    connectors: [{connectors}]
"""


def _flow(mapping: dict[str, object]) -> str:
    return "{" + ", ".join(f"{k}: {_flow(v) if isinstance(v, dict) else v}" for k, v in mapping.items()) + "}"


def push_meter(meter: str, token: str) -> str:
    return _flow({"id": meter, "source": "api", "token": f'"{token}"', "stale_after_s": 15})


def modbus_meter(meter: str, modbus: dict[str, object]) -> str:
    return _flow({"id": meter, "source": "modbus", "stale_after_s": 15, "modbus": modbus})


def write_commissioning(path: Path, *, charger: str, password: str, site_meter: str, guns: int) -> Path:
    """The file at ``path``: ``charger`` with ``guns`` connectors of 32 A, ``site_meter`` from push_meter or
    modbus_meter."""
    connectors = ", ".join(f"{{id: {n}, max_current_a: 32}}" for n in range(1, guns + 1))
    path.write_text(TEMPLATE.format(site_meter=site_meter, charger=charger, password=password, connectors=connectors),
                    encoding="utf-8")
    return path
