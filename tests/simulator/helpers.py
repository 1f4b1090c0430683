"""Builders for the simulator's pure model, shared by its tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from apps.simulator.model import ChargerConfig, ChargerSim, ConnectorConfig, Ev

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)


def ev(connector: int = 1, minutes: int = 60, battery_kwh: int = 60, soc: int = 20, amps: str = "32", phases: int = 1,
       arrive_s: int = 0) -> Ev:
    arrival = T0 + timedelta(seconds=arrive_s)
    wh = battery_kwh * 1000
    return Ev(connector_id=connector, arrival=arrival, departure=arrival + timedelta(minutes=minutes), battery_wh=wh,
              energy_wh=wh * soc // 100, max_current_a=Decimal(amps), phases=phases, id_tag="04A1B2C3D4")


def charger(*evs: Ev, phases: int = 1, max_a: str = "32", interval: int = 60, connectors: int = 1) -> ChargerSim:
    config = ChargerConfig("SIM-1", tuple(ConnectorConfig(n, phases=phases, max_current_a=Decimal(max_a))
                                          for n in range(1, connectors + 1)), meter_value_interval_s=interval,
                           measurands="Energy.Active.Import.Register,Current.Import,Power.Active.Import")
    return ChargerSim(config, list(evs), T0, registers_wh={1: 1_000_000})
